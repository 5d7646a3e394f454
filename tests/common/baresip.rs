//! A headless baresip (1.0.0, Debian) for interop tests: private config dir (`-f DIR`), SIP on a
//! free loopback port, no registration, G.711 only, a WAV file as the microphone (`aufile`, which
//! wants 16-bit 8 kHz mono here because the source rate and channels are pinned) and the `sndfile`
//! filter dumping what it decodes to `DIR/snd/dump-<time>-dec.wav`. Commands such as `/dial URI`
//! go through the menu module via `-e`; `-t SECS` bounds its lifetime.
#![allow(dead_code)]

use super::procs::{skip_or_fail, tool_available, Proc, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use switchboard::media::tone::ToneGenerator;
use switchboard::media::wav::write_wav;

/// The module directory holding `g711.so`, if baresip's modules are installed.
pub fn module_path() -> Option<PathBuf> {
    let env = std::env::var_os("BARESIP_MODULE_PATH").map(PathBuf::from);
    let fixed = [
        "/usr/lib/baresip/modules",
        "/usr/lib/x86_64-linux-gnu/baresip/modules",
        "/usr/lib/aarch64-linux-gnu/baresip/modules",
        "/usr/local/lib/baresip/modules",
    ];
    env.into_iter().chain(fixed.iter().map(PathBuf::from)).find(|d| d.join("g711.so").is_file())
}

/// True when baresip and its G.711, aufile and sndfile modules are installed (else skip or, in CI,
/// fail).
pub fn available() -> bool {
    if !tool_available("baresip", &["-h"], "apt-get install baresip") {
        return false;
    }
    match module_path() {
        Some(m) if ["aufile.so", "sndfile.so", "menu.so", "account.so"].iter().all(|f| m.join(f).is_file()) => true,
        _ => {
            skip_or_fail("baresip modules g711/aufile/sndfile/menu/account not found (apt-get install baresip)");
            false
        }
    }
}

/// Writes `seconds` of a `freq_hz` sine at -6 dBFS as 8 kHz mono 16-bit WAV.
pub fn write_tone_wav(path: &Path, freq_hz: f64, seconds: u32) {
    let mut tone = ToneGenerator::new(freq_hz, 16_384);
    let samples: Vec<i16> = (0..seconds * 50).flat_map(|_| tone.next_frame()).collect();
    std::fs::write(path, write_wav(&samples).expect("encode WAV")).expect("write tone WAV");
}

/// How to run baresip.
pub struct Options<'a> {
    /// Account user: the one INVITEs must be addressed to, and the caller's From.
    pub user: &'a str,
    /// Answer incoming calls at once (`answermode=auto`).
    pub auto_answer: bool,
    /// Tone it sends, in Hz.
    pub tone_hz: f64,
    /// RTP port range, e.g. `"17300-17399"`.
    pub rtp_ports: &'a str,
    /// Dial this URI once started (`-e "/dial URI"`; it needs a user part).
    pub dial: Option<&'a str>,
    /// Quit (hanging up) this many seconds after start (`-t`).
    pub quit_after: u32,
}

/// A running baresip; killed on drop, its dir removed with the owning test's [`TempDir`].
pub struct Baresip {
    pub proc: Proc,
    pub port: u16,
    pub dir: PathBuf,
}

impl Baresip {
    /// Starts baresip in `dir` (its config dir) and waits up to `limit` for "baresip is ready."
    /// (SIP socket bound, accounts loaded). A SIP port taken in the meantime is retried with
    /// another one.
    pub fn start(dir: &TempDir, o: &Options, limit: Duration) -> Baresip {
        Baresip::start_with(dir, o, "", limit)
    }

    /// As [`Baresip::start`], with `account_params` appended to the account line (e.g.
    /// `;mediaenc=srtp-mand`); a `mediaenc=srtp...` parameter loads the `srtp` module too.
    pub fn start_with(dir: &TempDir, o: &Options, account_params: &str, limit: Duration) -> Baresip {
        let modules = module_path().expect("baresip modules");
        let tone = dir.join("tone.wav");
        write_tone_wav(&tone, o.tone_hz, o.quit_after + 10);
        let snd = dir.join("snd");
        std::fs::create_dir_all(&snd).expect("snd dir");
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = super::procs::free_port_udp_tcp();
            let mut conf = config(&modules, port, &tone, &snd, o.rtp_ports);
            if account_params.contains("mediaenc=srtp") {
                conf.push_str("module srtp.so\n");
            }
            std::fs::write(dir.join("config"), conf).expect("write config");
            let answer = if o.auto_answer { ";answermode=auto" } else { "" };
            let account = format!("<sip:{}@127.0.0.1:{port}>;regint=0{answer};audio_codecs=PCMU,PCMA{account_params}\n", o.user);
            std::fs::write(dir.join("accounts"), account).expect("write accounts");
            std::fs::write(dir.join("contacts"), "").expect("write contacts");
            let mut cmd = Command::new("baresip");
            cmd.arg("-f").arg(dir.path()).args(["-t", &o.quit_after.to_string()]);
            if let Some(uri) = o.dial {
                cmd.args(["-e", &format!("/dial {uri}")]);
            }
            let proc = Proc::spawn("baresip", &mut cmd);
            match proc.wait_line("baresip is ready.", limit) {
                Ok(_) => return Baresip { proc, port, dir: dir.path().to_owned() },
                Err(e) if e.contains("Address already in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("baresip could not bind a SIP port: {last_err}");
    }

    /// The decoder dumps (audio baresip received), oldest first.
    pub fn received_recordings(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("snd"))
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with("-dec.wav")).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn config(modules: &Path, port: u16, tone: &Path, snd: &Path, rtp_ports: &str) -> String {
    // alsa's "null" device is a player that needs no sound card; without alsa.so there is no
    // player at all, and the sndfile dump (which sits before the player) still works.
    let player = if modules.join("alsa.so").is_file() { "module alsa.so\naudio_player alsa,null\naudio_alert alsa,null\n" } else { "" };
    format!(
        "module_path {modules}\n\
         sip_listen 127.0.0.1:{port}\n\
         net_interface 127.0.0.1\n\
         call_local_timeout 120\n\
         audio_source aufile,{tone}\n\
         ausrc_srate 8000\n\
         ausrc_channels 1\n\
         rtp_ports {rtp_ports}\n\
         rtcp_mux no\n\
         module g711.so\n\
         module aufile.so\n\
         {player}\
         module sndfile.so\n\
         snd_path {snd}\n\
         module_tmp account.so\n\
         module_app menu.so\n\
         statmode_default off\n\
         ringback_disabled yes\n\
         menu_bell no\n",
        modules = modules.display(),
        tone = tone.display(),
        snd = snd.display(),
    )
}
