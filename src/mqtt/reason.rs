//! Typed MQTT v5 reason codes, one enum per packet that carries them.

/// Defines a reason-code enum with its v5 code for every variant and an `Other(u8)` catch-all.
macro_rules! reason_code {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A code MQTT v5 does not define for this packet.
            Other(u8),
        }

        impl $name {
            /// The reason code from its wire value.
            pub fn from_code(code: u8) -> Self {
                match code {
                    $( $code => Self::$variant, )+
                    other => Self::Other(other),
                }
            }

            /// The wire value of this reason code.
            pub fn code(self) -> u8 {
                match self {
                    $( Self::$variant => $code, )+
                    Self::Other(other) => other,
                }
            }
        }
    };
}

reason_code! {
    /// Why the server refused a connection (the reason code of a failed CONNACK).
    ConnectReason {
        /// 0x80: unspecified error.
        UnspecifiedError = 0x80,
        /// 0x81: the CONNECT was malformed.
        MalformedPacket = 0x81,
        /// 0x82: protocol error.
        ProtocolError = 0x82,
        /// 0x83: implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x84: unsupported protocol version.
        UnsupportedProtocolVersion = 0x84,
        /// 0x85: client identifier not valid.
        ClientIdentifierNotValid = 0x85,
        /// 0x86: bad user name or password.
        BadUserNameOrPassword = 0x86,
        /// 0x87: not authorized.
        NotAuthorized = 0x87,
        /// 0x88: server unavailable.
        ServerUnavailable = 0x88,
        /// 0x89: server busy.
        ServerBusy = 0x89,
        /// 0x8A: banned.
        Banned = 0x8A,
        /// 0x8C: bad authentication method.
        BadAuthenticationMethod = 0x8C,
        /// 0x90: topic name invalid.
        TopicNameInvalid = 0x90,
        /// 0x95: packet too large.
        PacketTooLarge = 0x95,
        /// 0x97: quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x99: payload format invalid.
        PayloadFormatInvalid = 0x99,
        /// 0x9A: retain not supported.
        RetainNotSupported = 0x9A,
        /// 0x9B: QoS not supported.
        QoSNotSupported = 0x9B,
        /// 0x9C: use another server.
        UseAnotherServer = 0x9C,
        /// 0x9D: server moved.
        ServerMoved = 0x9D,
        /// 0x9F: connection rate exceeded.
        ConnectionRateExceeded = 0x9F,
    }
}

reason_code! {
    /// The outcome of a QoS 1 PUBLISH, from its PUBACK.
    PubAckReason {
        /// 0x00: accepted.
        Success = 0x00,
        /// 0x10: accepted, but nobody is subscribed to the topic.
        NoMatchingSubscribers = 0x10,
        /// 0x80: unspecified error.
        UnspecifiedError = 0x80,
        /// 0x83: implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x87: not authorized.
        NotAuthorized = 0x87,
        /// 0x90: topic name invalid.
        TopicNameInvalid = 0x90,
        /// 0x91: packet identifier in use.
        PacketIdentifierInUse = 0x91,
        /// 0x97: quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x99: payload format invalid.
        PayloadFormatInvalid = 0x99,
    }
}

impl PubAckReason {
    /// Whether the server accepted the message (reason code below 0x80).
    pub fn is_success(self) -> bool {
        self.code() < 0x80
    }
}

reason_code! {
    /// Why the server refused one filter of a SUBSCRIBE (a failure code of a SUBACK).
    SubscribeFailure {
        /// 0x80: unspecified error.
        UnspecifiedError = 0x80,
        /// 0x83: implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x87: not authorized.
        NotAuthorized = 0x87,
        /// 0x8F: topic filter invalid.
        TopicFilterInvalid = 0x8F,
        /// 0x91: packet identifier in use.
        PacketIdentifierInUse = 0x91,
        /// 0x97: quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x9E: shared subscriptions not supported.
        SharedSubscriptionsNotSupported = 0x9E,
        /// 0xA1: subscription identifiers not supported.
        SubscriptionIdentifiersNotSupported = 0xA1,
        /// 0xA2: wildcard subscriptions not supported.
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}

reason_code! {
    /// The reason code of a DISCONNECT, sent by either side.
    DisconnectReason {
        /// 0x00: normal disconnection.
        NormalDisconnection = 0x00,
        /// 0x04: disconnect and publish the will message.
        DisconnectWithWillMessage = 0x04,
        /// 0x80: unspecified error.
        UnspecifiedError = 0x80,
        /// 0x81: malformed packet.
        MalformedPacket = 0x81,
        /// 0x82: protocol error.
        ProtocolError = 0x82,
        /// 0x83: implementation specific error.
        ImplementationSpecificError = 0x83,
        /// 0x87: not authorized.
        NotAuthorized = 0x87,
        /// 0x89: server busy.
        ServerBusy = 0x89,
        /// 0x8B: server shutting down.
        ServerShuttingDown = 0x8B,
        /// 0x8D: keep alive timeout.
        KeepAliveTimeout = 0x8D,
        /// 0x8E: session taken over by another connection with the same client id.
        SessionTakenOver = 0x8E,
        /// 0x8F: topic filter invalid.
        TopicFilterInvalid = 0x8F,
        /// 0x90: topic name invalid.
        TopicNameInvalid = 0x90,
        /// 0x93: receive maximum exceeded.
        ReceiveMaximumExceeded = 0x93,
        /// 0x94: topic alias invalid.
        TopicAliasInvalid = 0x94,
        /// 0x95: packet too large.
        PacketTooLarge = 0x95,
        /// 0x96: message rate too high.
        MessageRateTooHigh = 0x96,
        /// 0x97: quota exceeded.
        QuotaExceeded = 0x97,
        /// 0x98: administrative action.
        AdministrativeAction = 0x98,
        /// 0x99: payload format invalid.
        PayloadFormatInvalid = 0x99,
        /// 0x9A: retain not supported.
        RetainNotSupported = 0x9A,
        /// 0x9B: QoS not supported.
        QoSNotSupported = 0x9B,
        /// 0x9C: use another server.
        UseAnotherServer = 0x9C,
        /// 0x9D: server moved.
        ServerMoved = 0x9D,
        /// 0x9E: shared subscriptions not supported.
        SharedSubscriptionsNotSupported = 0x9E,
        /// 0x9F: connection rate exceeded.
        ConnectionRateExceeded = 0x9F,
        /// 0xA0: maximum connect time.
        MaximumConnectTime = 0xA0,
        /// 0xA1: subscription identifiers not supported.
        SubscriptionIdentifiersNotSupported = 0xA1,
        /// 0xA2: wildcard subscriptions not supported.
        WildcardSubscriptionsNotSupported = 0xA2,
    }
}
