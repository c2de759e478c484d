//! kim-cm's KAS client against the simulated KAS: a 20 MiB mail streamed from the
//! spool, encrypted on the way, downloaded by a recipient with curl and opened with
//! the key and hash the client returned; the 507 of a full account.

use std::sync::Arc;
use std::time::Duration;

use kim_cm::crypto::kas_blob::BlobOpener;
use kim_cm::http::client::HttpSettings;
use kim_cm::http::kas::{
    add_mail_data, read_mail_data, KasError, KasReadError, MailData, UploadForm,
};
use kim_cm::http::url::HttpsUrl;
use kim_cm::spool::{Spool, SpoolSettings};

const A: &str = "a@x.kim.test";
const B: &str = "b@x.kim.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_mail_goes_up_encrypted_and_comes_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let fd_dir = dir.path().join("fd");
    std::fs::create_dir_all(&fd_dir).unwrap();
    std::fs::write(
        fd_dir.join("limits.json"),
        format!(r#"{{"{B}": {{"kasQuota": 1000}}}}"#),
    )
    .unwrap();
    let fd = kim_cm::testbed::fachdienst::start(&fd_dir, 0, 0, &[A, B])
        .await
        .unwrap();
    let settings = HttpSettings {
        connector: Arc::new(kim_cm::net::tls::connector(&fd.tls.ca_cert, None).unwrap()),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(60),
    };
    let base = HttpsUrl::parse(&kim_cm::testbed::kas::base_url(fd.kas)).unwrap();

    // a mail of 20 MiB in the spool (on disk beyond 1 MiB)
    let spool_settings = SpoolSettings {
        dir: dir.path().join("spool"),
        memory_limit: 1024 * 1024,
    };
    let mut spool = Spool::new(&spool_settings);
    let mut mail = Vec::with_capacity(20 << 20);
    let mut i = 0u32;
    while mail.len() < 20 << 20 {
        mail.extend_from_slice(format!("line {i:010} of the MRI series\r\n").as_bytes());
        i += 1;
    }
    for c in mail.chunks(1 << 16) {
        spool.write(c).await.unwrap();
    }
    assert!(spool.on_disk());
    let (a, b) = (fd.accounts[0].clone(), fd.accounts[1].clone());
    let up = add_mail_data(
        &UploadForm {
            base: &base,
            user: &a.address,
            password: &a.password,
            message_id: "<big-1@x.kim.test>",
            recipients: &[B.to_string()],
            expires: "Thu, 24 Dec 2099 10:00:00 +0000",
        },
        MailData::from_spool(spool).await.unwrap(),
        &settings,
    )
    .await
    .unwrap();
    assert_eq!(up.size, mail.len() as u64);
    assert!(up.link.starts_with(&base.to_string()), "{}", up.link);

    // the recipient downloads with curl (an independent client) and opens it
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "60", "--cacert"])
        .arg(&fd.tls.ca_cert)
        .args(["-H", &format!("recipient: {B}"), &up.link])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), mail.len() + 28, "IV + data + tag");
    let mut opener = BlobOpener::new(&up.blob.k).unwrap();
    let mut plain = Vec::new();
    for c in out.stdout.chunks(1 << 20) {
        opener.update(c, &mut plain).unwrap();
    }
    opener.finish(&up.blob.hash).unwrap();
    assert!(plain == mail, "the restored data equal the mail");

    // kim-cm's own download: the same, into a spool, checked against k and hash
    let mut got = read_mail_data(
        &up.link,
        B,
        &up.blob.k,
        &up.blob.hash,
        &settings,
        &spool_settings,
    )
    .await
    .unwrap();
    assert!(got.on_disk() && got.to_vec().await.unwrap() == mail);
    // a wrong hash (4012) and a wrong key (4007) are refused, no spool comes back
    let other = base64_sha(b"other");
    let e = read_mail_data(&up.link, B, &up.blob.k, &other, &settings, &spool_settings)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("hash"), "{e}");
    let wrong_key = base64_sha(b"a 32-byte key stands in here....");
    let e = read_mail_data(
        &up.link,
        B,
        &wrong_key,
        &up.blob.hash,
        &settings,
        &spool_settings,
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("altered"), "{e}");
    // not a recipient: unavailable (403); then 429 once the downloads are used up
    let e = read_mail_data(
        &up.link,
        A,
        &up.blob.k,
        &up.blob.hash,
        &settings,
        &spool_settings,
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(e, KasReadError::Unavailable(ref w) if w.contains("403")),
        "{e}"
    );
    // four downloads so far (curl, one good, two refused after download); the fifth
    // is the last the simulator allows
    assert!(read_mail_data(
        &up.link,
        B,
        &up.blob.k,
        &up.blob.hash,
        &settings,
        &spool_settings
    )
    .await
    .is_ok());
    let e = read_mail_data(
        &up.link,
        B,
        &up.blob.k,
        &up.blob.hash,
        &settings,
        &spool_settings,
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(e, KasReadError::TooMany), "{e}");

    // A_22419-01: a full account is told apart from other failures
    let mut small = Spool::new(&spool_settings);
    small.write(&[7u8; 5000]).await.unwrap();
    let err = add_mail_data(
        &UploadForm {
            base: &base,
            user: &b.address,
            password: &b.password,
            message_id: "<m2@x.kim.test>",
            recipients: &[A.to_string()],
            expires: "Thu, 24 Dec 2099 10:00:00 +0000",
        },
        MailData::from_spool(small).await.unwrap(),
        &settings,
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, KasError::Full), "{err}");
}

fn base64_sha(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(openssl::sha::sha256(data))
}
