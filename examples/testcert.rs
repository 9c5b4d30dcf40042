//! Test certificates for the TLS tests and the benchmark, made with rcgen (never for production).
//!
//! ```text
//! testcert ca   OUT                                  # OUT.pem, OUT.key: a CA
//! testcert leaf CA OUT NAME [NAME…] [--client] [--expired] [--days N]
//!                                                    # OUT.pem (leaf then CA), OUT.key
//! ```
//!
//! A leaf is signed by the CA whose files are `CA.pem` and `CA.key`. `--client` makes a client
//! certificate (extended key usage clientAuth, subject CN = the first NAME); otherwise a server
//! certificate whose subjectAltNames are the NAMEs (`*.apps.example.test` works). `--expired`
//! makes one that ended on 2001-01-01; otherwise it is valid from yesterday for `--days`
//! (default 90, like an ACME certificate).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure here is the report

use std::fs;
use std::process::ExitCode;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testcert: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("ca") if args.len() == 2 => ca(&args[1]),
        Some("leaf") if args.len() >= 4 => leaf(&args[1], &args[2], &args[3..]),
        _ => Err(
            "usage: testcert ca OUT | testcert leaf CA OUT NAME… [--client] [--expired] [--days N]"
                .into(),
        ),
    }
}

fn ca(out: &str) -> Result<(), String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "vipgate test CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write(out, &cert.pem(), &key.serialize_pem())
}

fn leaf(ca: &str, out: &str, rest: &[String]) -> Result<(), String> {
    let mut names = Vec::new();
    let mut client = false;
    let mut expired = false;
    let mut days: Option<i64> = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--client" => client = true,
            "--expired" => expired = true,
            "--days" => {
                let n = it.next().ok_or("--days needs a number")?;
                days = Some(n.parse().map_err(|_| format!("--days {n}: not a number"))?);
            }
            name => names.push(name.to_string()),
        }
    }
    if names.is_empty() {
        return Err("a leaf needs at least one NAME".into());
    }
    let ca_pem = read(&format!("{ca}.pem"))?;
    let ca_key = KeyPair::from_pem(&read(&format!("{ca}.key"))?).map_err(|e| e.to_string())?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| e.to_string())?;

    let mut params = if client {
        CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?
    } else {
        CertificateParams::new(names.clone()).map_err(|e| e.to_string())?
    };
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].as_str());
    params.distinguished_name = dn;
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    } else {
        let d = days.unwrap_or(90);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(d);
    }
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    write(
        out,
        &format!("{}{}", cert.pem(), ca_pem),
        &key.serialize_pem(),
    )
}

fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn write(out: &str, cert: &str, key: &str) -> Result<(), String> {
    fs::write(format!("{out}.pem"), cert).map_err(|e| format!("{out}.pem: {e}"))?;
    fs::write(format!("{out}.key"), key).map_err(|e| format!("{out}.key: {e}"))?;
    Ok(())
}
