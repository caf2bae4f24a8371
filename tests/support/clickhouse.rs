//! A real ClickHouse server (Debian's `clickhouse-server`) on loopback with
//! TLS native and HTTPS ports, in a temp dir of its own; and the test CA that
//! signs its wildcard certificate. Killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::peers::{free_port, wait_listening};

/// A CA made at test time and a server certificate it signed, as PEM files.
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl TestCa {
    /// Writes `ca.pem`, `server.pem`, `server.key` into `dir`; the server
    /// certificate covers `names` (e.g. `*.ch.example.test`).
    pub fn create(dir: &Path, names: &[&str]) -> TestCa {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ch-edge-proxy e2e CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "clickhouse e2e");
        let cert = params.signed_by(&key, &issuer).unwrap();

        let ca = TestCa {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("server.pem"),
            key_pem: dir.join("server.key"),
        };
        std::fs::write(&ca.ca_pem, ca_cert.pem()).unwrap();
        std::fs::write(&ca.cert_pem, cert.pem()).unwrap();
        std::fs::write(&ca.key_pem, key.serialize_pem()).unwrap();
        ca
    }
}

/// `clickhouse-server` with `tcp_port_secure` and `https_port` on 127.0.0.1.
pub struct ClickHouse {
    child: Child,
    /// Native protocol over TLS (`tcp_port_secure`).
    pub native_tls: SocketAddr,
    /// HTTP over TLS (`https_port`).
    pub https: SocketAddr,
    /// Native protocol in plaintext (`tcp_port`), behind terminating routes.
    pub native_plain: SocketAddr,
    /// HTTP in plaintext (`http_port`).
    pub http: SocketAddr,
    pub dir: PathBuf,
}

impl ClickHouse {
    /// Starts the server in `dir` (config, users, data, logs all inside) with
    /// the certificate of `ca`; returns once the TLS ports accept.
    pub fn start(bin: &Path, dir: &Path, ca: &TestCa) -> ClickHouse {
        let native_tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let native_plain: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let d = dir.display();
        // 18.16 needs `mark_cache_size`; every path points into `dir` so no
        // root and no /var/lib are needed. The default user is open to all
        // of loopback: the hops in front of it connect from 127.x.y.z.
        let config = format!(
            "<yandex>\n\
             <logger><level>information</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>\n\
             <listen_host>127.0.0.1</listen_host>\n\
             <tcp_port>{}</tcp_port><http_port>{}</http_port>\n\
             <tcp_port_secure>{}</tcp_port_secure><https_port>{}</https_port>\n\
             <openSSL><server><certificateFile>{}</certificateFile><privateKeyFile>{}</privateKeyFile>\
             <verificationMode>none</verificationMode></server></openSSL>\n\
             <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/user_files/</user_files_path>\n\
             <format_schema_path>{d}/format_schemas/</format_schema_path>\n\
             <mark_cache_size>268435456</mark_cache_size>\n\
             <users_config>users.xml</users_config>\n\
             </yandex>\n",
            native_plain.port(),
            http.port(),
            native_tls.port(),
            https.port(),
            ca.cert_pem.display(),
            ca.key_pem.display(),
        );
        let users = "<yandex><profiles><default/></profiles><users><default><password/>\
                     <networks><ip>127.0.0.0/8</ip></networks><profile>default</profile>\
                     <quota>default</quota></default></users><quotas><default/></quotas></yandex>\n";
        std::fs::write(dir.join("config.xml"), config).unwrap();
        std::fs::write(dir.join("users.xml"), users).unwrap();
        let mut child = Command::new(bin)
            .arg(format!("--config-file={d}/config.xml"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn clickhouse-server");
        wait_listening(native_tls, &mut child);
        wait_listening(https, &mut child);
        wait_listening(native_plain, &mut child);
        wait_listening(http, &mut child);
        ClickHouse {
            child,
            native_tls,
            https,
            native_plain,
            http,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
