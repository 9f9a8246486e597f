//! Harness for the MQTT session (being written).
