//! Media interop with peers we did not write, on 127.0.0.1: sipp's built-in `uac_pcap` scenario
//! and baresip (caller and callee) against the softphone, and the softphone against the service's
//! `echo` user. Each test sends a tone one way and checks the other side's recording with
//! `switchboard::media::tone::analyse`, and checks the softphone's JSON call summary.
//!
//! Every process is started here with ephemeral SIP ports and its own temp dir and RTP port range
//! (17000-17799, below the ephemeral range and apart from the defaults other tests use); every wait
//! is on an output line or process exit with a deadline; only our own children are signalled. A
//! missing sipp or baresip skips a test with a printed reason, or fails it when `CI` is set.

#[path = "common/baresip.rs"]
mod baresip;
#[path = "common/pcap.rs"]
mod pcap;
#[path = "common/procs.rs"]
mod procs;

use baresip::Baresip;
use procs::{skip_or_fail, tool_available, Proc, Stream, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use switchboard::media::g711::Codec;
use switchboard::media::tone::{analyse, Analysis};
use switchboard::media::wav::read_wav;

/// Bound for start-up, call and exit waits: generous for a loaded 2-core machine, but bounded.
const LIMIT: Duration = Duration::from_secs(60);
const TOLERANCE_HZ: f64 = 15.0;

fn softphone(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_softphone"));
    cmd.args(["--summary", "json"]).args(args);
    cmd
}

/// `softphone answer` started with `args` (global options then `answer` and its options); returns
/// it and the URI from its first stdout line.
fn answering_softphone(args: &[&str]) -> (Proc, String) {
    let phone = Proc::spawn("softphone answer", &mut softphone(args));
    let line = phone.wait_line("softphone listening on udp 127.0.0.1:", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let uri = line.split("; call ").nth(1).map(str::trim).filter(|u| u.starts_with("sip:") && u.contains('@'));
    let uri = uri.unwrap_or_else(|| panic!("no URI in the listening line: {line}")).to_owned();
    (phone, uri)
}

/// `switchboard serve` on an ephemeral port; returns it and its echo URI.
fn service(rtp_ports: &str) -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["serve", "--data", "none", "--listen", "127.0.0.1:0", "--rtp-ports", rtp_ports]);
    let svc = Proc::spawn("switchboard serve", &mut cmd);
    let line = svc.wait_line("switchboard listening on udp 127.0.0.1:", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let uri = line.split("; call ").nth(1).map(str::trim).filter(|u| u.starts_with("sip:echo@"));
    (svc, uri.unwrap_or_else(|| panic!("no echo URI in: {line}")).to_owned())
}

/// The JSON summaries the softphone printed (one per call).
fn summaries(phone: &Proc) -> Vec<Value> {
    phone
        .lines(Stream::Stdout)
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("summary {l}: {e}")))
        .collect()
}

/// The single call summary, after the softphone exited successfully.
fn one_call(phone: &mut Proc) -> Value {
    let status = phone.expect_exit(LIMIT);
    assert!(status.success(), "{} exited with {status}:\n{}", phone.name(), phone.transcript());
    let mut calls = summaries(phone);
    assert_eq!(calls.len(), 1, "one call expected:\n{}", phone.transcript());
    calls.remove(0)
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("summary has no number {key}: {v}"))
}

/// Analyses a WAV file and asserts its dominant frequency and amount of non-silent audio.
fn assert_tone(path: &Path, expect_hz: f64, min_active_s: f64) -> Analysis {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let wav = read_wav(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let a = analyse(&wav.samples, 8000);
    eprintln!(
        "{}: {:.2} s, active {:.2} s, dominant {:?} Hz, rms {:?} dBFS",
        path.display(),
        a.duration,
        a.active_seconds,
        a.dominant,
        a.rms_dbfs.map(|r| (r * 10.0).round() / 10.0)
    );
    let f = a.dominant.unwrap_or_else(|| panic!("{}: silent recording ({a:?})", path.display()));
    assert!((f - expect_hz).abs() <= TOLERANCE_HZ, "{}: dominant {f} Hz, expected {expect_hz} Hz ({a:?})", path.display());
    assert!(a.active_seconds >= min_active_s, "{}: only {} s active, expected >= {min_active_s} ({a:?})", path.display(), a.active_seconds);
    a
}

/// Checks baresip's decoder dump when it made one (the sndfile module writes it per call).
fn check_baresip_recording(bs: &Baresip, expect_hz: f64, min_active_s: f64) {
    match bs.received_recordings().first() {
        Some(p) => {
            assert_tone(p, expect_hz, min_active_s);
        }
        None => eprintln!("baresip made no decoder dump; its side of the audio is not checked"),
    }
}

/// sipp's built-in `uac_pcap` (offers PCMA only plus telephone-event, plays pcap/g711a.pcap, then
/// an RFC 2833 digit '1' from pcap/dtmf_2833_1.pcap with its own SSRC, then BYE to the
/// Request-URI) against `softphone answer` with default codecs. Our pcap is a 7 s 1000 Hz tone.
#[test]
fn sipp_uac_pcap_to_softphone_answer() {
    if !tool_available("sipp", &["-v"], "apt-get install sip-tester") {
        return;
    }
    let dtmf = Path::new("/usr/share/sip-tester/dtmf_2833_1.pcap");
    if !dtmf.is_file() {
        skip_or_fail(&format!("{} not found (Debian's sip-tester ships it)", dtmf.display()));
        return;
    }
    let dir = TempDir::new("uac-pcap");
    let sipp_dir = dir.join("sipp");
    std::fs::create_dir_all(sipp_dir.join("pcap")).expect("pcap dir");
    std::fs::write(sipp_dir.join("pcap/g711a.pcap"), pcap::g711_tone_pcap(Codec::Pcma, 1000.0, 16_384, 7.0)).expect("write pcap");
    std::fs::copy(dtmf, sipp_dir.join("pcap/dtmf_2833_1.pcap")).expect("copy dtmf pcap");

    let rec = dir.join("received.wav");
    let (mut phone, uri) =
        answering_softphone(&["--record", rec.to_str().unwrap(), "--rtp-ports", "17000-17099", "answer", "--calls", "1"]);
    let (user, hostport) = uri.trim_start_matches("sip:").split_once('@').expect("user@host:port");

    // sipp binds its SIP, media and control ports itself; a port taken between our check and its
    // bind (another test run) makes it exit at once with "Unable to bind": try other ports.
    for attempt in 1..=3 {
        let media_port = procs::free_udp_span(17100..=17199, 4);
        let (sip_port, ctrl_port) = (procs::free_port_udp_tcp(), procs::free_port_udp_tcp());
        let error_file = format!("errors-{attempt}.log");
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&sipp_dir)
            .args(["-sn", "uac_pcap", hostport, "-s", user, "-i", "127.0.0.1", "-mi", "127.0.0.1", "-m", "1", "-l", "1", "-nostdin"])
            .args(["-p", &sip_port.to_string(), "-mp", &media_port.to_string(), "-cp", &ctrl_port.to_string()])
            .args(["-timeout", "50s", "-timeout_error", "-recv_timeout", "30s", "-trace_err", "-error_file", &error_file]);
        let mut sipp = Proc::spawn("sipp", &mut cmd);
        let status = sipp.expect_exit(LIMIT);
        let errors = std::fs::read_to_string(sipp_dir.join(&error_file)).unwrap_or_default();
        if status.success() {
            break;
        }
        let retry =
            attempt < 3 && errors.contains("Unable to bind") && phone.lines(Stream::Stderr).iter().all(|l| !l.contains("incoming call"));
        assert!(
            retry,
            "sipp exited with {status}; {error_file}:\n{errors}\nsipp:\n{}\nsoftphone:\n{}",
            sipp.transcript(),
            phone.transcript()
        );
        eprintln!("sipp could not bind its ports (attempt {attempt}), retrying: {}", errors.trim());
    }

    let call = one_call(&mut phone);
    eprintln!("softphone summary: {call}");
    assert_eq!(call["state"], "completed", "{call}");
    assert_eq!(call["reason"], "bye-remote", "sipp hangs up: {call}");
    assert_eq!(call["codec"], "PCMA", "uac_pcap offers PCMA only: {call}");
    assert!(call["dtmf_received"].as_str().unwrap_or_default().contains('1'), "digit '1' from uac_pcap not reported: {call}");
    assert!(count(&call, "rtp_received") >= 330, "350 tone packets sent: {call}");
    assert_eq!(count(&call, "rtp_lost"), 0, "{call}");
    assert_tone(&rec, 1000.0, 6.0);
}

/// `softphone dial` (440 Hz) to baresip auto-answering with a 1000 Hz tone; the softphone hangs up
/// after 6 s.
#[test]
fn softphone_dial_to_baresip() {
    if !baresip::available() {
        return;
    }
    let dir = TempDir::new("dial-baresip");
    let bs_dir = TempDir::new("baresip-callee");
    let opts = baresip::Options { user: "test", auto_answer: true, tone_hz: 1000.0, rtp_ports: "17300-17399", dial: None, quit_after: 90 };
    let mut bs = Baresip::start(&bs_dir, &opts, LIMIT);

    let rec = dir.join("received.wav");
    let uri = format!("sip:test@127.0.0.1:{}", bs.port);
    let args = ["--tone", "440", "--record", rec.to_str().unwrap(), "--rtp-ports", "17200-17299", "dial", &uri, "--duration", "6"];
    let mut phone = Proc::spawn("softphone dial", &mut softphone(&args));
    let status = phone.expect_exit(LIMIT);
    assert!(status.success(), "softphone exited with {status}:\nsoftphone:\n{}\nbaresip:\n{}", phone.transcript(), bs.proc.transcript());
    let call = one_call(&mut phone);
    eprintln!("softphone summary: {call}");

    // baresip logs the end of the call once our BYE arrived; then let it quit (closes its dumps).
    bs.proc.wait_line("terminated (duration", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    bs.proc.terminate(Duration::from_secs(20));
    assert_eq!(call["state"], "completed", "{call}");
    assert_eq!(call["reason"], "bye-local", "{call}");
    assert_eq!(call["responses"].as_array().and_then(|r| r.last()), Some(&Value::from(200)), "{call}");
    assert!(count(&call, "rtp_received") >= 250, "6 s of 20 ms packets is 300: {call}");
    assert_tone(&rec, 1000.0, 4.5);
    check_baresip_recording(&bs, 440.0, 4.5);
}

/// baresip dials `softphone answer` sending 440 Hz; the softphone answers with 1000 Hz. baresip's
/// `-t 10` ends the call with its BYE.
#[test]
fn baresip_dial_to_softphone_answer() {
    if !baresip::available() {
        return;
    }
    let dir = TempDir::new("baresip-answer");
    let bs_dir = TempDir::new("baresip-caller");
    let rec = dir.join("received.wav");
    let args = ["--tone", "1000", "--record", rec.to_str().unwrap(), "--rtp-ports", "17400-17499", "answer", "--calls", "1"];
    let (mut phone, uri) = answering_softphone(&args);
    let opts =
        baresip::Options { user: "caller", auto_answer: false, tone_hz: 440.0, rtp_ports: "17500-17599", dial: Some(&uri), quit_after: 10 };
    let mut bs = Baresip::start(&bs_dir, &opts, LIMIT);

    // baresip ends the call itself (-t), so it exits first; the softphone follows after the BYE.
    let bs_status = bs.proc.expect_exit(LIMIT);
    let call = one_call(&mut phone);
    eprintln!("softphone summary: {call}");
    let established = bs.proc.wait_line("Call established", Duration::ZERO);
    assert!(established.is_ok(), "baresip never established the call:\n{}", bs.proc.transcript());
    assert!(bs_status.success(), "baresip exited with {bs_status}:\n{}", bs.proc.transcript());
    assert_eq!(call["state"], "completed", "{call}");
    assert_eq!(call["reason"], "bye-remote", "baresip hangs up: {call}");
    assert!(count(&call, "rtp_received") >= 300, "about 10 s of 20 ms packets: {call}");
    assert_tone(&rec, 440.0, 6.0);
    check_baresip_recording(&bs, 1000.0, 6.0);
}

/// `softphone dial sip:echo@...` through `switchboard serve`: the echo user sends every packet back,
/// so the recording is our own 440 Hz tone.
#[test]
fn softphone_dial_to_service_echo() {
    let dir = TempDir::new("echo");
    let (mut svc, uri) = service("17700-17799");
    let rec = dir.join("received.wav");
    let args = ["--tone", "440", "--record", rec.to_str().unwrap(), "--rtp-ports", "17600-17699", "dial", &uri, "--duration", "5"];
    let mut phone = Proc::spawn("softphone dial", &mut softphone(&args));
    let call = one_call(&mut phone);
    eprintln!("softphone summary: {call}");
    svc.terminate(Duration::from_secs(10));
    assert_eq!(call["state"], "completed", "{call}");
    assert_eq!(count(&call, "rtp_lost"), 0, "{call}");
    assert!(count(&call, "rtp_received") >= 200, "5 s of 20 ms packets is 250: {call}");
    assert_tone(&rec, 440.0, 4.0);
}

/// The pcap writer, read back: 350 PCMA packets 20 ms apart, consecutive sequence numbers and
/// timestamps, and the payloads decode to the tone.
#[test]
fn generated_pcap_holds_the_tone() {
    let bytes = pcap::g711_tone_pcap(Codec::Pcma, 1000.0, 16_384, 7.0);
    let datagrams = pcap::read_udp(&bytes).expect("readable pcap");
    assert_eq!(datagrams.len(), 350);
    let mut samples = Vec::new();
    for (k, d) in datagrams.iter().enumerate() {
        let p = &d.payload;
        assert_eq!(p.len(), 12 + 160);
        assert_eq!(p[0], 0x80, "RTP version 2");
        assert_eq!(p[1] & 0x7F, 8, "payload type 8 = PCMA");
        assert_eq!(p[1] & 0x80 != 0, k == 0, "marker on the first packet only");
        let (seq, ts) = (u16::from_be_bytes([p[2], p[3]]), u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        let (seq0, ts0) = (
            u16::from_be_bytes([datagrams[0].payload[2], datagrams[0].payload[3]]),
            u32::from_be_bytes(datagrams[0].payload[4..8].try_into().unwrap()),
        );
        assert_eq!(seq, seq0.wrapping_add(k as u16));
        assert_eq!(ts, ts0.wrapping_add(160 * k as u32));
        assert_eq!(d.at - datagrams[0].at, Duration::from_millis(20 * k as u64));
        samples.extend(Codec::Pcma.decode(&p[12..]));
    }
    let a = analyse(&samples, 8000);
    assert!((a.dominant.unwrap() - 1000.0).abs() <= 1.0, "{a:?}");
    assert!((a.active_seconds - 7.0).abs() < 1e-9, "{a:?}");
    let rms = a.rms_dbfs.unwrap();
    assert!((-10.0..-8.0).contains(&rms), "-6 dBFS peak is about -9 dBFS RMS: {rms}");
}
