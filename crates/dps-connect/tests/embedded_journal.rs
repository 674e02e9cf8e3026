//! The `embedded` registry's journal: changes are written through before they are visible, a
//! refused write changes nothing, and restored identities read back (unknown credential kinds
//! included) without a panic.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};

use dps_connect::{IdentityJournal, InProcessHubRegistry, JournalFuture};
use dps_service::{HubAuth, HubDevice, HubError, HubRegistry};
use dps_types::{DeviceCapabilities, HubHostName, HubIdentity, InitialTwin, RegistrationId};

/// Records every call; refuses them all while `fail` is set.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    fail: Mutex<bool>,
}

impl Recorder {
    fn answer(&self, call: String) -> JournalFuture<'_> {
        let fail = *self.fail.lock().unwrap();
        if !fail {
            self.calls.lock().unwrap().push(call);
        }
        Box::pin(async move {
            if fail {
                Err("disk full".into())
            } else {
                Ok(())
            }
        })
    }
}

impl IdentityJournal for Recorder {
    fn save(&self, id: HubIdentity) -> JournalFuture<'_> {
        self.answer(format!(
            "save {} {} {}",
            id.cursor(),
            id.auth_kind,
            id.writes
        ))
    }

    fn remove(&self, hub: HubHostName, device_id: String) -> JournalFuture<'_> {
        self.answer(format!("remove {hub}/{device_id}"))
    }
}

fn device(id: &str, tag: &str) -> HubDevice {
    let twin: InitialTwin =
        serde_json::from_value(serde_json::json!({"tags": {"t": tag}})).unwrap();
    HubDevice {
        hub: HubHostName::new("Hub.localhost").unwrap(),
        device_id: id.to_owned(),
        registration_id: RegistrationId::new(id).unwrap(),
        auth: HubAuth::CertificateAuthority,
        capabilities: DeviceCapabilities::default(),
        initial_twin: Some(twin),
        reset_twin: true,
        previous_hub: None,
    }
}

#[tokio::test]
async fn writes_go_through_the_journal_and_refusals_change_nothing() {
    let journal = Arc::new(Recorder::default());
    let reg = InProcessHubRegistry::with_journal(journal.clone());
    let hub = HubHostName::new("hub.localhost").unwrap();
    reg.provision(device("d1", "a")).await.unwrap();
    assert_eq!(
        *journal.calls.lock().unwrap(),
        ["save hub.localhost/d1 certificateAuthority 1"]
    );

    *journal.fail.lock().unwrap() = true;
    let err = reg.provision(device("d1", "b")).await.unwrap_err();
    assert!(matches!(err, HubError::Unavailable(_)), "{err:?}");
    let kept = reg.device("hub.localhost", "d1").unwrap();
    assert_eq!(kept.writes, 1, "the refused write is not applied");
    assert_eq!(kept.twin.unwrap().tags.unwrap()["t"], "a");
    assert!(matches!(
        reg.remove(&hub, "d1").await,
        Err(HubError::Unavailable(_))
    ));
    assert!(
        reg.device("hub.localhost", "d1").is_some(),
        "the refused remove is not applied"
    );
    assert!(reg.provision(device("d2", "a")).await.is_err());
    assert!(reg.device("hub.localhost", "d2").is_none());

    *journal.fail.lock().unwrap() = false;
    reg.remove(&hub, "d1").await.unwrap();
    reg.remove(&hub, "d1").await.unwrap();
    assert!(reg.devices().is_empty());
    assert_eq!(
        journal.calls.lock().unwrap()[1..],
        ["remove hub.localhost/d1"],
        "removing an absent identity does not reach the journal"
    );
}

#[tokio::test]
async fn restored_identities_are_served_without_being_journaled_again() {
    let journal = Arc::new(Recorder::default());
    let reg = InProcessHubRegistry::with_journal(journal.clone());
    let stored: Vec<HubIdentity> = serde_json::from_value(serde_json::json!([
        {"hub": "hub.localhost", "deviceId": "d1", "registrationId": "d1", "authKind": "sas", "writes": 3},
        {"hub": "hub.localhost", "deviceId": "d2", "registrationId": "d2", "authKind": "from-the-future"},
    ]))
    .unwrap();
    assert_eq!(reg.restore(stored), 2);
    assert!(journal.calls.lock().unwrap().is_empty());
    let d1 = reg.device("HUB.localhost", "d1").unwrap();
    assert_eq!((d1.auth_kind, d1.writes), ("sas", 3));
    assert_eq!(
        reg.device("hub.localhost", "d2").unwrap().auth_kind,
        "unknown"
    );
    let hub = HubHostName::new("hub.localhost").unwrap();
    assert!(reg.fetch(&hub, "d1").await.unwrap().is_some());
    reg.provision(device("d1", "x")).await.unwrap();
    assert_eq!(
        *journal.calls.lock().unwrap(),
        ["save hub.localhost/d1 certificateAuthority 4"]
    );
}
