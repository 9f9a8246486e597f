//! [`TestPki`]: a certificate authority, a broker certificate and a client certificate, made
//! at run time with the `openssl` command (nothing secret is checked in).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where the `openssl` command is looked for.
pub const OPENSSL: &str = "openssl";

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// Fresh PEM files in a temporary directory (removed when dropped): a CA, a broker certificate for
/// `localhost` and `127.0.0.1`, and a client certificate (CN `leasedlock-test-client`), all EC
/// P-256 and signed by the CA; the keys are unencrypted PKCS#8 and readable by all (for a
/// mosquitto that runs as its own user).
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Generates the files.
    ///
    /// # Panics
    ///
    /// When `openssl` is missing or fails.
    pub fn generate() -> TestPki {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("leasedlock-pki-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the PKI directory");
        let pki = TestPki { dir };
        let ca_ext = pki.write(
            "ca.ext",
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
        );
        let server_ext = pki.write(
            "server.ext",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        );
        let client_ext = pki.write(
            "client.ext",
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        );
        for name in ["ca", "server", "client"] {
            pki.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &pki.path(&format!("{name}.key")),
            ]);
        }
        let (ca_key, ca_cert) = (pki.path("ca.key"), pki.ca_file());
        pki.openssl(&[
            "req",
            "-new",
            "-key",
            &ca_key,
            "-subj",
            "/CN=leasedlock test CA",
            "-out",
            &pki.path("ca.csr"),
        ]);
        pki.sign("ca.csr", &ca_ext, &ca_cert, None);
        for (name, cn, ext) in [
            ("server", "localhost", &server_ext),
            ("client", "leasedlock-test-client", &client_ext),
        ] {
            let csr = format!("{name}.csr");
            pki.openssl(&[
                "req",
                "-new",
                "-key",
                &pki.path(&format!("{name}.key")),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &pki.path(&csr),
            ]);
            pki.sign(&csr, ext, &pki.path(&format!("{name}.pem")), Some(&ca_cert));
        }
        // mosquitto started as root drops to its own user before it loads its key: throw-away
        // test keys may be world-readable.
        for name in ["ca.key", "server.key", "client.key"] {
            fs::set_permissions(pki.path(name), fs::Permissions::from_mode(0o644))
                .expect("make a test key readable");
        }
        pki
    }

    /// The CA certificate (PEM).
    pub fn ca_file(&self) -> String {
        self.path("ca.pem")
    }

    /// The broker's certificate (PEM), for `localhost` and `127.0.0.1`.
    pub fn server_cert_file(&self) -> String {
        self.path("server.pem")
    }

    /// The broker's key (PEM, PKCS#8).
    pub fn server_key_file(&self) -> String {
        self.path("server.key")
    }

    /// The client certificate (PEM).
    pub fn client_cert_file(&self) -> String {
        self.path("client.pem")
    }

    /// The client key (PEM, PKCS#8).
    pub fn client_key_file(&self) -> String {
        self.path("client.key")
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        fs::write(&path, text).expect("write an openssl extension file");
        path
    }

    /// Signs a CSR for a year: by the CA, or by its own key when `ca` is `None`.
    fn sign(&self, csr: &str, ext: &str, out: &str, ca: Option<&str>) {
        let ca_key = self.path("ca.key");
        let csr = self.path(csr);
        let mut args = vec![
            "x509", "-req", "-in", &csr, "-days", "365", "-sha256", "-extfile", ext, "-out", out,
        ];
        match ca {
            Some(ca) => args.extend(["-CA", ca, "-CAkey", &ca_key, "-CAcreateserial"]),
            None => args.extend(["-signkey", &ca_key]),
        }
        self.openssl(&args);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new(OPENSSL)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("run {OPENSSL}: {e}"));
        assert!(
            out.status.success(),
            "{OPENSSL} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
