//! getLimits (A_22416) against the simulated AccountLimit service: fetched with
//! Basic auth, cached in the store, the cache used while the service is down for up to
//! 24 hours, a temporary error without it.

use std::sync::Arc;
use std::time::Duration;

use kim_cm::http::client::HttpSettings;
use kim_cm::http::url::HttpsUrl;
use kim_cm::limits::{Limits, LimitsError};
use kim_cm::store::Store;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn limits_are_fetched_cached_and_survive_an_outage_for_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let fd_dir = dir.path().join("fd");
    std::fs::create_dir_all(&fd_dir).unwrap();
    std::fs::write(
        fd_dir.join("limits.json"),
        r#"{"a@x.kim.test": {"dataTimeToLive": 30, "remainQuota": 1000}}"#,
    )
    .unwrap();
    let fd = kim_cm::testbed::fachdienst::start(&fd_dir, 0, 0, &["a@x.kim.test", "b@x.kim.test"])
        .await
        .unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.sqlite")).unwrap());
    let limits = Limits {
        url: HttpsUrl::parse(&kim_cm::testbed::limits::base_url(fd.limits)).unwrap(),
        http: HttpSettings {
            connector: Arc::new(kim_cm::net::tls::connector(&fd.tls.ca_cert, None).unwrap()),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        },
        store: store.clone(),
    };
    let (a, b) = (fd.accounts[0].clone(), fd.accounts[1].clone());

    // the configured answer for a, the yaml's defaults for b
    let la = limits.get(&a.address, &a.password).await.unwrap();
    assert_eq!((la.ttl_days(), la.remain_quota), (30, 1000));
    let lb = limits.get(&b.address, &b.password).await.unwrap();
    assert_eq!((lb.ttl_days(), lb.max_mail_size), (90, 734_003_200));
    // a wrong password is the service's 401, reported, nothing cached for it
    let e = limits.get(&b.address, "wrong").await;
    assert!(e.is_ok(), "b's fresh cache answers without a request");
    let err = Limits {
        store: Arc::new(Store::open(&dir.path().join("other.sqlite")).unwrap()),
        url: limits.url.clone(),
        http: limits.http.clone(),
    }
    .get(&b.address, "wrong")
    .await
    .unwrap_err();
    let LimitsError::Unavailable { why, .. } = &err;
    assert!(why.contains("401"), "{err}");

    // the service goes away
    drop(fd);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // a fresh cache is used without asking
    assert_eq!(
        limits
            .get(&a.address, "irrelevant")
            .await
            .unwrap()
            .ttl_days(),
        30
    );
    // two hours old: a refresh is tried, fails, and the cache still serves
    let (json, _) = store.account_limit(&a.address).unwrap().unwrap();
    store
        .put_account_limit(&a.address, &json, now() - 2 * 3600)
        .unwrap();
    assert_eq!(
        limits
            .get(&a.address, "irrelevant")
            .await
            .unwrap()
            .ttl_days(),
        30
    );
    let (_, fetched) = store.account_limit(&a.address).unwrap().unwrap();
    assert!(
        fetched < now() - 3600,
        "the refresh really failed (service down)"
    );
    // older than 24 hours: no valid limits, a temporary error
    store
        .put_account_limit(&a.address, &json, now() - 25 * 3600)
        .unwrap();
    let err = limits.get(&a.address, "irrelevant").await.unwrap_err();
    assert!(err.to_string().contains("try again later"), "{err}");
    // the cache survives a restart of the store
    drop(limits);
    drop(store);
    let reopened = Store::open(&dir.path().join("state.sqlite")).unwrap();
    assert!(reopened.account_limit(&a.address).unwrap().is_some());
}
