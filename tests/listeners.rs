//! The client-facing listeners in each TLS mode (implicit TLS, STARTTLS/STLS), driven
//! by curl, in front of the sandbox's simulated Fachdienst.

mod common;

use common::kimcm::{curl, strip_trace_headers, url_with_login, write_file, KimCm, Sandbox};
use common::raw::Raw;

#[test]
fn smtps_starttls_pop3s_and_stls_listeners() {
    let sb = Sandbox::start();
    let tls_dir = tempfile::tempdir().unwrap();
    let tls = kim_cm::testbed::ca::make_tls_ca(tls_dir.path(), &[]).unwrap();
    let (cert, key, ca) = (
        tls.server_cert.display(),
        tls.server_key.display(),
        tls.ca_cert.display().to_string(),
    );
    let k = KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\nallow_unsealed_for_testing = true\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"implicit\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"implicit\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [upstream]\nca_file = \"{}\"\n",
        sb.ca_file()
    ));
    let k2 = KimCm::serve(&format!(
        "[proxy]\ndata_dir = \"{{dir}}/data\"\nallow_unsealed_for_testing = true\n\
         [[smtp_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [[pop3_listener]]\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         [upstream]\nca_file = \"{}\"\n",
        sb.ca_file()
    ));
    let (alice, apw, asmtp, _) = sb.account(0);
    let (bob, bpw, _, bpop3) = sb.account(1);

    for (i, (proxy, scheme, extra)) in [(&k, "smtps", None), (&k2, "smtp", Some("--ssl-reqd"))]
        .into_iter()
        .enumerate()
    {
        let mail =
            format!("From: <{alice}>\r\nTo: <{bob}>\r\nSubject: tls {i}\r\n\r\nover {scheme}\r\n");
        let file = write_file(sb.dir.path(), &format!("m{i}.eml"), mail.as_bytes());
        let url = url_with_login(scheme, &proxy.smtp.unwrap().to_string(), &asmtp, &apw, "");
        let mut args = vec![
            "--url",
            &url,
            "--cacert",
            &ca,
            "--mail-from",
            &alice,
            "--mail-rcpt",
            &bob,
        ];
        args.extend(extra);
        args.extend(["--upload-file", file.to_str().unwrap()]);
        let (code, _, err) = curl(&args);
        assert_eq!(code, 0, "{scheme}: {err}\n{}", proxy.log());
        let stored = sb.stored_mails(&bob);
        assert_eq!(strip_trace_headers(stored.last().unwrap()), mail.as_bytes());
    }
    let stored = sb.stored_mails(&bob);
    assert_eq!(stored.len(), 2);

    for (proxy, scheme, extra) in [(&k, "pop3s", None), (&k2, "pop3", Some("--ssl-reqd"))] {
        let url = url_with_login(scheme, &proxy.pop3.unwrap().to_string(), &bpop3, &bpw, "/2");
        let mut args = vec!["--url", &url, "--cacert", &ca];
        args.extend(extra);
        let (code, got, err) = curl(&args);
        assert_eq!(code, 0, "{scheme}: {err}\n{}", proxy.log());
        assert_eq!(got, stored[1], "{scheme}");
    }

    // the STARTTLS listener offers STARTTLS before TLS, and refuses a second one after
    let mut c = Raw::connect(k2.smtp.unwrap());
    c.reply();
    c.send(b"EHLO x\r\n");
    assert!(c
        .reply_lines()
        .iter()
        .any(|l| l == "250-STARTTLS" || l == "250 STARTTLS"));
    // bytes pipelined behind STARTTLS would be read as if they came over TLS: refused
    c.send(b"STARTTLS\r\nNOOP\r\n");
    let r = c.reply();
    assert!(r.starts_with("554"), "{r}");
}
