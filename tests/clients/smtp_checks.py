"""Drives kim-cm's SMTP listener with Python's smtplib, as a mail client would, and
prints what it saw as JSON for the Rust test to check.

usage: smtp_checks.py HOST PORT SMTP_USER PASSWORD PLAIN_ADDRESS RCPT
"""
import base64
import json
import smtplib
import sys

host, port, user, pw, plain, rcpt = sys.argv[1:7]
port = int(port)
out = {}


def reply(r):
    return [r[0], r[1].decode("utf-8", "replace")]


def b64(s):
    return base64.b64encode(s.encode()).decode()


s = smtplib.SMTP(host, port, timeout=60)
out["ehlo"] = reply(s.ehlo("client.test"))
out["mail_before_auth"] = reply(s.docmd("MAIL", "FROM:<%s>" % plain))
out["rcpt_before_auth"] = reply(s.docmd("RCPT", "TO:<%s>" % rcpt))
out["data_before_auth"] = reply(s.docmd("DATA"))
out["unknown"] = reply(s.docmd("FOO", "bar"))
out["cram"] = reply(s.docmd("AUTH", "CRAM-MD5"))
out["noop"] = reply(s.docmd("NOOP"))
out["rset"] = reply(s.docmd("RSET"))
out["helo"] = reply(s.docmd("HELO", "client.test"))
out["incomplete"] = reply(s.docmd("AUTH", "PLAIN " + b64("\0%s#%s\0%s" % (plain, "127.0.0.1:1", pw))))
out["bad_b64"] = reply(s.docmd("AUTH", "PLAIN !!!notbase64"))
s.close()

s = smtplib.SMTP(host, port, timeout=60)
s.ehlo("client.test")
out["wrong_password"] = reply(s.docmd("AUTH", "PLAIN " + b64("\0%s\0%s" % (user, pw + "x"))))
s.close()

s = smtplib.SMTP(host, port, timeout=60)
s.ehlo("client.test")
out["unknown_plain_address"] = reply(s.docmd("AUTH", "PLAIN " + b64("\0%s\0%s" % ("nobody@nowhere.kim.test", pw))))
s.close()

# AUTH LOGIN with the spec's user name, then a mail
s = smtplib.SMTP(host, port, timeout=60)
s.ehlo("client.test")
s.user, s.password = user, pw
out["auth_login"] = reply(s.auth("LOGIN", s.auth_login, initial_response_ok=False))
msg = "From: <%s>\r\nTo: <%s>\r\nSubject: smtplib LOGIN\r\n\r\nvia AUTH LOGIN\r\n" % (plain, rcpt)
out["send_login"] = s.sendmail(plain, [rcpt], msg) == {}
out["mail_size_too_big"] = reply(s.docmd("MAIL", "FROM:<%s> SIZE=800000000" % plain))
out["wrong_sender"] = None
try:
    s.sendmail(rcpt, [rcpt], "Subject: wrong sender\r\n\r\nx\r\n")
except smtplib.SMTPDataError as e:
    out["wrong_sender"] = [e.smtp_code, e.smtp_error.decode()]
except smtplib.SMTPException as e:
    out["wrong_sender"] = ["other", repr(e)]
out["unknown_rcpt"] = None
try:
    s.sendmail(plain, ["nobody@praxis-b.kim.test"], "Subject: unknown rcpt\r\n\r\nx\r\n")
except smtplib.SMTPDataError as e:
    out["unknown_rcpt"] = [e.smtp_code, e.smtp_error.decode()]
except smtplib.SMTPException as e:
    out["unknown_rcpt"] = ["other", repr(e)]
out["quit"] = reply(s.quit())

# AUTH PLAIN with the plain address (the account is in kim-cm's config)
s = smtplib.SMTP(host, port, timeout=60)
s.login(plain, pw)
out["send_plain_address"] = s.sendmail(plain, [rcpt], "Subject: plain address\r\n\r\nvia plain address\r\n") == {}
s.quit()

print(json.dumps(out))
