//! X.509 attestation end to end: dps-server on 127.0.0.1:0 (HTTPS and MQTT on TLS), devices
//! registering with dps-client and their TLS client certificate; individual enrollments pinned
//! by certificate, groups trusting an uploaded signing certificate or a verified scope CA;
//! SAS devices on the same ports; a device of another scope's CA refused.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use dps_client::{ClientIdentity, Credential, RegisterOptions, Transport, TrustedCa, register};
use dps_connect::InProcessHubRegistry;
use dps_service::{ScopeCa, Service, ServiceOptions};
use dps_store::{MemoryStore, Store as _};
use dps_testkit::pki::{KeyAlg, TestCa, TestDevice, self_signed_device};
use dps_testkit::*;
use dps_types::{
    AttestationKind, EnrollmentGroup, IdScope, IndividualEnrollment, RegistrationId,
    RegistrationStatus, Rejection,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const OTHER_SCOPE: &str = "0ne00000002";

struct Fixture {
    svc: Service<MemoryStore, InProcessHubRegistry>,
    hubs: InProcessHubRegistry,
    https_port: u16,
    mqtt_port: u16,
    server_ca: String,
    root: TestCa,
    inter: TestCa,
    other_root: TestCa,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Fixture {
    async fn start() -> Self {
        let server_ca = TestCa::root("server CA", KeyAlg::P256);
        let (chain, key) = server_ca.server();
        let root = TestCa::root("Contoso root", KeyAlg::Rsa2048);
        let inter = root.intermediate("Contoso intermediate");
        let unverified = TestCa::root("Unproven root", KeyAlg::P256);
        let other_root = TestCa::root("Fabrikam root", KeyAlg::P256);
        let ca = |name: &str, c: &TestCa, verified| ScopeCa {
            name: name.into(),
            der: c.cert.clone(),
            verified,
        };
        let mut scope = fixture_scope(SCOPE, SERVICE_HOST);
        scope.cas = vec![
            ca("contoso-root", &root, true),
            ca("unproven", &unverified, false),
        ];
        let mut other = fixture_scope(OTHER_SCOPE, "other.example.net");
        other.cas = vec![ca("fabrikam-root", &other_root, true)];
        let hubs = InProcessHubRegistry::default();
        let svc = Service::builder(MemoryStore::new(), hubs.clone())
            .scope(scope)
            .scope(other)
            .options(ServiceOptions {
                retry_after_secs: 1,
                ..ServiceOptions::default()
            })
            .build();
        let tls = dps_server::tls::server_config(chain.as_bytes(), key.as_bytes()).unwrap();
        let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mqtt = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (https_port, mqtt_port) = (
            https.local_addr().unwrap().port(),
            mqtt.local_addr().unwrap().port(),
        );
        let (stop, stopped) = watch::channel(false);
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let tasks = vec![
            tokio::spawn(dps_server::serve(
                https,
                tls.clone(),
                svc.clone(),
                until(stopped.clone()),
            )),
            tokio::spawn(dps_server::serve_mqtt(
                mqtt,
                tls,
                svc.clone(),
                until(stopped),
            )),
        ];
        Self {
            svc,
            hubs,
            https_port,
            mqtt_port,
            server_ca: server_ca.pem,
            root,
            inter,
            other_root,
            stop,
            tasks,
        }
    }

    async fn enroll(
        &self,
        rid: &str,
        body: serde_json::Value,
    ) -> Result<IndividualEnrollment, Rejection> {
        self.svc
            .admin_for_scope(SCOPE)
            .unwrap()
            .put::<IndividualEnrollment>(rid, body, None)
            .await
    }

    async fn group(
        &self,
        gid: &str,
        x509: serde_json::Value,
    ) -> Result<EnrollmentGroup, Rejection> {
        self.svc
            .admin_for_scope(SCOPE)
            .unwrap()
            .put::<EnrollmentGroup>(
                gid,
                json!({"attestation": {"type": "x509", "x509": x509}}),
                None,
            )
            .await
    }

    async fn register(
        &self,
        transport: Transport,
        scope: &str,
        rid: &str,
        credential: Credential,
    ) -> Result<dps_client::DeviceRegistrationResult, dps_client::Error> {
        let port = match transport {
            Transport::Mqtt => self.mqtt_port,
            _ => self.https_port,
        };
        let mut opts = RegisterOptions::new(
            format!("localhost:{port}"),
            IdScope::new(scope).unwrap(),
            RegistrationId::new(rid).unwrap(),
            credential,
        );
        opts.transport = transport;
        opts.ca = Some(TrustedCa::Pem(self.server_ca.clone().into_bytes()));
        tokio::time::timeout(Duration::from_secs(30), register(opts))
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

fn x509(d: &TestDevice, intermediates: &[&TestCa]) -> Credential {
    Credential::X509(ClientIdentity::from_pem(
        d.chain_pem(intermediates),
        d.key_pem.clone(),
    ))
}

const BOTH: [Transport; 2] = [Transport::Https, Transport::Mqtt];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individual_x509_devices_over_https_and_mqtt() {
    let f = Fixture::start().await;
    for (transport, alg) in BOTH.into_iter().zip([KeyAlg::P256, KeyAlg::Rsa2048]) {
        let rid = format!("x509-{alg:?}").to_ascii_lowercase();
        let dev = self_signed_device(&rid, alg);
        let other = self_signed_device(&rid, alg);
        let created = f
            .enroll(
                &rid,
                json!({"attestation": {"type": "x509", "x509": {"clientCertificates": {
                    "primary": {"certificate": other.cert_pem},
                    "secondary": {"certificate": dev.cert_pem},
                }}}}),
            )
            .await
            .unwrap();
        // The service API shows info, never the certificate, even to the writer.
        let shown = serde_json::to_value(&created).unwrap();
        let secondary = &shown["attestation"]["x509"]["clientCertificates"]["secondary"];
        assert!(secondary.get("certificate").is_none(), "{shown}");
        assert_eq!(
            secondary["info"]["subjectName"],
            format!("CN={rid}, O=dps-rs test PKI")
        );
        assert_eq!(secondary["info"]["version"], 3);

        let result = f
            .register(transport, SCOPE, &rid, x509(&dev, &[]))
            .await
            .unwrap();
        assert_eq!(
            result.state.status,
            RegistrationStatus::Assigned,
            "{transport:?}"
        );
        let hub = result.state.assigned_hub.unwrap();
        assert_eq!(
            f.hubs.device(hub.as_str(), &rid).unwrap().auth_kind,
            "selfSigned"
        );
        let record = f
            .svc
            .store()
            .registration(&IdScope::new(SCOPE).unwrap(), &rid)
            .await;
        assert_eq!(record.unwrap().unwrap().attestation, AttestationKind::X509);

        // A certificate with the right CN that is not enrolled is refused.
        let stranger = self_signed_device(&rid, alg);
        let err = f
            .register(transport, SCOPE, &rid, x509(&stranger, &[]))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401), "{err:?}");
        // So is a registration ID other than the certificate's CN.
        let err = f
            .register(transport, SCOPE, "someone-else", x509(&dev, &[]))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401), "{err:?}");
    }
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_devices_and_sas_devices_share_the_ports() {
    let f = Fixture::start().await;
    // A group trusting the verified scope CA by name; another trusting the intermediate.
    f.group(
        "by-root",
        json!({"caReferences": {"primary": "contoso-root"}}),
    )
    .await
    .unwrap();
    // Unverified or unknown CAs cannot be referenced; nor can another scope's.
    for name in ["unproven", "fabrikam-root", "nope"] {
        let e = f
            .group("bad", json!({"caReferences": {"primary": name}}))
            .await
            .unwrap_err();
        assert!(matches!(e, Rejection::BadRequest(_)), "{name}: {e:?}");
    }
    f.enroll(
        "sas-dev",
        json!({"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": DEV1_KEY}}}),
    )
    .await
    .unwrap();
    for transport in BOTH {
        let rid = format!("grp-{transport:?}").to_ascii_lowercase();
        let dev = f.inter.device(&rid);
        let result = f
            .register(transport, SCOPE, &rid, x509(&dev, &[&f.inter]))
            .await
            .unwrap();
        assert_eq!(result.state.status, RegistrationStatus::Assigned);
        let hub = result.state.assigned_hub.unwrap();
        // Like Azure DPS: a group member's hub identity is pinned to its own certificate.
        assert_eq!(
            f.hubs.device(hub.as_str(), &rid).unwrap().auth_kind,
            "selfSigned"
        );
        let rec = f
            .svc
            .admin_for_scope(SCOPE)
            .unwrap()
            .registration(&rid)
            .await
            .unwrap();
        assert_eq!(rec.status, RegistrationStatus::Assigned);

        // Without its intermediate the chain does not reach the root.
        let lone = f.inter.device(&format!("{rid}-lone"));
        let err = f
            .register(transport, SCOPE, &format!("{rid}-lone"), x509(&lone, &[]))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401), "{err:?}");

        // A SAS device on the same listener.
        let sas = f
            .register(
                transport,
                SCOPE,
                "sas-dev",
                Credential::SymmetricKey(DEV1_KEY.into()),
            )
            .await
            .unwrap();
        assert_eq!(sas.state.status, RegistrationStatus::Assigned);
    }

    // The closest group decides: a disabled group on the intermediate blocks its devices even
    // though the root's group is enabled.
    let g = f
        .svc
        .admin_for_scope(SCOPE)
        .unwrap()
        .put::<EnrollmentGroup>(
            "by-intermediate",
            json!({"provisioningStatus": "disabled", "attestation": {"type": "x509", "x509": {
                "signingCertificates": {"primary": {"certificate": f.inter.pem}}}}}),
            None,
        )
        .await
        .unwrap();
    let info =
        &serde_json::to_value(&g).unwrap()["attestation"]["x509"]["signingCertificates"]["primary"];
    assert!(info.get("certificate").is_none());
    assert_eq!(
        info["info"]["subjectName"],
        "CN=Contoso intermediate, O=dps-rs test PKI"
    );
    let dev = f.inter.device("grp-blocked");
    let err = f
        .register(
            Transport::Https,
            SCOPE,
            "grp-blocked",
            x509(&dev, &[&f.inter]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            dps_client::Error::Registration(dps_client::FlowError::Disabled)
        ),
        "{err:?}"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_of_another_scope_is_refused() {
    let f = Fixture::start().await;
    f.group(
        "by-root",
        json!({"caReferences": {"primary": "contoso-root"}}),
    )
    .await
    .unwrap();
    f.svc
        .admin_for_scope(OTHER_SCOPE)
        .unwrap()
        .put::<EnrollmentGroup>(
            "fabrikam",
            json!({"attestation": {"type": "x509", "x509": {"caReferences": {"primary": "fabrikam-root"}}}}),
            None,
        )
        .await
        .unwrap();
    // A Fabrikam device provisions in its own scope ...
    let dev = f.other_root.device("fab-1");
    let ok = f
        .register(Transport::Https, OTHER_SCOPE, "fab-1", x509(&dev, &[]))
        .await
        .unwrap();
    assert_eq!(ok.state.status, RegistrationStatus::Assigned);
    // ... and is a stranger in Contoso's, over both transports; a Contoso device likewise in
    // Fabrikam's.
    for transport in BOTH {
        let err = f
            .register(transport, SCOPE, "fab-1", x509(&dev, &[]))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401), "{err:?}");
    }
    let contoso = f.root.device("con-1");
    let err = f
        .register(Transport::Https, OTHER_SCOPE, "con-1", x509(&contoso, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    let records = f
        .svc
        .store()
        .registration(&IdScope::new(SCOPE).unwrap(), "fab-1")
        .await;
    assert!(records.unwrap().is_none());
    f.stop().await;
}

#[tokio::test]
async fn service_api_stores_certificates_but_never_returns_them() {
    use base64::Engine as _;
    let (svc, _) = fixture_service(FakeClock::at_unix(1_795_737_600));
    let admin = svc.admin_for_scope(SCOPE).unwrap();
    let dev = self_signed_device("api-dev", KeyAlg::P256);
    // The C SDK's form: base64 of the PEM text.
    let b64_pem = base64::engine::general_purpose::STANDARD.encode(&dev.cert_pem);
    let body = json!({"attestation": {"type": "x509", "x509": {"clientCertificates": {
        "primary": {"certificate": b64_pem}}}}});
    admin
        .put::<IndividualEnrollment>("api-dev", body, None)
        .await
        .unwrap();

    let got: IndividualEnrollment = admin.get("api-dev").await.unwrap();
    let shown = serde_json::to_value(&got).unwrap();
    let primary = &shown["attestation"]["x509"]["clientCertificates"]["primary"];
    assert!(primary.get("certificate").is_none(), "{shown}");
    let thumb: String = dps_attest::x509::sha256(&dev.cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(primary["info"]["sha256Thumbprint"], thumb);
    let mech = admin
        .attestation::<IndividualEnrollment>("api-dev")
        .await
        .unwrap();
    assert!(
        !serde_json::to_string(&mech)
            .unwrap()
            .contains("certificate\"")
    );

    // GET -> PUT round trip without the certificate keeps the stored one.
    admin
        .put::<IndividualEnrollment>("api-dev", shown.clone(), Some("*"))
        .await
        .unwrap();
    let stored = svc
        .store()
        .enrollment(&IdScope::new(SCOPE).unwrap(), "api-dev")
        .await
        .unwrap()
        .unwrap();
    let cert = stored
        .attestation
        .x509()
        .unwrap()
        .client_certificates
        .as_ref()
        .unwrap();
    let kept = cert
        .primary
        .as_ref()
        .unwrap()
        .certificate
        .as_deref()
        .unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(kept)
            .unwrap(),
        dev.cert.as_ref()
    );

    // Wrong members for the record kind, a missing or malformed certificate: 400.
    let ca = TestCa::root("api root", KeyAlg::P256);
    let refused = [
        (
            "api-2",
            json!({"signingCertificates": {"primary": {"certificate": ca.pem}}}),
            false,
        ),
        (
            "api-3",
            json!({"clientCertificates": {"primary": {}}}),
            false,
        ),
        (
            "api-4",
            json!({"clientCertificates": {"primary": {"certificate": "bm90IGEgY2VydA=="}}}),
            false,
        ),
        (
            "grp-1",
            json!({"clientCertificates": {"primary": {"certificate": dev.cert_pem}}}),
            true,
        ),
    ];
    for (id, x509, group) in refused {
        let body = json!({"attestation": {"type": "x509", "x509": x509}});
        let e = if group {
            admin
                .put::<EnrollmentGroup>(id, body, None)
                .await
                .map(|_| ())
        } else {
            admin
                .put::<IndividualEnrollment>(id, body, None)
                .await
                .map(|_| ())
        };
        assert!(matches!(e, Err(Rejection::BadRequest(_))), "{id}: {e:?}");
    }
}
