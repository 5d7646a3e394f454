//! The softphone's interactive prompt: reads commands from stdin while calls run.
//!
//! Commands: `dial URI`, `answer`, `hangup`, `hold`, `resume`, `dtmf DIGITS`, `transfer URI`,
//! `move ADDR`, `status`, `help`, `quit`. End of input (Ctrl-D) quits too. Lines are read by a
//! thread and sent to the driver as [`Command`]s through its channel, so each runs as soon as it
//! is typed (no polling).

use std::net::SocketAddr;
use std::time::Instant;
use switchboard::application::{Application, FlowId, Io};
use switchboard::driver::Command;
use switchboard::endpoint::{Endpoint, EndpointEvent};
use switchboard::transport::udp::UdpTransport;
use switchboard::ua::phone::Phone;
use tokio::sync::mpsc;

const HELP: &str = "commands: dial URI | answer | hangup | hold | resume | dtmf DIGITS | transfer URI | move ADDR | status | quit";

struct PromptApp {
    phone: Phone,
    quitting: bool,
    reported: usize,
    digits_seen: usize,
    /// Our SIP address: a dialled URI must resolve to an address of its family.
    local: SocketAddr,
}

fn say(s: &str) {
    println!("{s}");
}

impl PromptApp {
    fn command(&mut self, io: &mut Io<'_>, line: &str, now: Instant) {
        let mut words = line.split_whitespace();
        let result = match (words.next(), words.next()) {
            (None, _) => Ok(()),
            (Some("dial"), Some(uri)) => match super::target_from(uri, self.local) {
                Ok(target) => {
                    self.phone.dial(uri, target);
                    self.phone.start(io, now);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            (Some("dial"), None) => Err("usage: dial sip:user@host[:port]".into()),
            (Some("answer"), _) => self.phone.answer(io, now).map_err(String::from),
            (Some("hangup"), _) => self.phone.hangup(io, now).map_err(String::from),
            (Some("hold"), _) => self.phone.hold(io, true, now).map_err(String::from),
            (Some("resume"), _) => self.phone.hold(io, false, now).map_err(String::from),
            (Some("dtmf"), Some(d)) => self.phone.send_dtmf(io, d).map_err(String::from),
            (Some("dtmf"), None) => Err("usage: dtmf 123#".into()),
            (Some("transfer"), Some(uri)) => self.phone.transfer(io, uri, now).map_err(String::from),
            (Some("transfer"), None) => Err("usage: transfer sip:user@host[:port] (blind transfer of the call)".into()),
            (Some("move"), Some(addr)) => super::move_addr(addr).map(|to| self.phone.move_to(to)),
            (Some("move"), None) => Err("usage: move IP[:PORT] (the phone's new local address)".into()),
            (Some("status"), _) => {
                self.status(now);
                Ok(())
            }
            (Some("quit" | "exit"), _) => {
                self.quit(io, now);
                Ok(())
            }
            (Some("help"), _) => {
                say(HELP);
                Ok(())
            }
            (Some(other), _) => Err(format!("unknown command {other}; {HELP}")),
        };
        if let Err(e) = result {
            say(&format!("error: {e}"));
        }
        self.news();
    }

    fn status(&self, now: Instant) {
        let calls = self.phone.status(now);
        if calls.is_empty() {
            say("no calls");
        }
        for (id, state, dur, media) in calls {
            let m = media.map_or_else(
                || "no media".to_string(),
                |m| {
                    format!(
                        "rtp sent {} received {} lost {} jitter {:.1} ms",
                        m.packets_sent, m.packets_received, m.packets_lost, m.jitter_ms
                    )
                },
            );
            say(&format!("{} {state} {:.1} s {m}", id.call_id, dur.as_secs_f64()));
        }
    }

    fn quit(&mut self, io: &mut Io<'_>, now: Instant) {
        if !self.quitting {
            self.quitting = true;
            self.phone.shutdown(io, now);
        }
    }

    /// Prints what happened since the last look: ended calls, digits.
    fn news(&mut self) {
        for r in &self.phone.reports[self.reported..] {
            say(&format!("call {} ended: {} ({})", r.call_id, r.state, r.reason));
        }
        self.reported = self.phone.reports.len();
        for (call, d) in &self.phone.digits[self.digits_seen..] {
            say(&format!("dtmf {d} on {call}"));
        }
        self.digits_seen = self.phone.digits.len();
        // Shown once, then dropped: the prompt is their only reader.
        for m in std::mem::take(&mut self.phone.messages) {
            say(&super::message::line(&m, false));
        }
        for l in std::mem::take(&mut self.phone.transfer_news) {
            say(&l);
        }
    }
}

impl Application for PromptApp {
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        self.phone.start(io, now);
    }

    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        let before = self.phone.status(now).len();
        self.phone.handle_event(io, event, now);
        if self.phone.status(now).len() > before {
            say("incoming call: type answer");
        }
        self.news();
    }

    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: bytes::Bytes, now: Instant) {
        self.phone.handle_media(io, flow, source, payload, now);
    }

    fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) {
        self.phone.handle_bind_failed(io, flow, now);
        self.news();
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.phone.handle_timeout(io, now);
        self.news();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.phone.poll_timeout()
    }

    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.quit(io, now);
    }

    fn is_done(&self) -> bool {
        self.quitting && self.phone.is_done()
    }

    fn poll_move(&mut self) -> Option<SocketAddr> {
        self.phone.poll_move()
    }

    fn moved(&mut self, io: &mut Io<'_>, local: std::io::Result<SocketAddr>, now: Instant) {
        match &local {
            Ok(addr) => say(&format!("moved to udp {addr}; re-registering and re-inviting")),
            Err(e) => say(&format!("error: cannot move: {e}")),
        }
        self.phone.moved(io, local, now);
        self.news();
    }
}

/// Runs the prompt until `quit`, end of input or Ctrl-C; returns the phone for the summary.
pub(crate) async fn run(transport: UdpTransport, endpoint: Endpoint, phone: Phone, local: SocketAddr, user: &str) -> Phone {
    let (tx, rx) = mpsc::channel::<Command<PromptApp>>(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
            let typed = std::mem::take(&mut line);
            let command: Command<PromptApp> = Box::new(move |app, io, now| app.command(io, typed.trim(), now));
            if tx.blocking_send(command).is_err() {
                return;
            }
        }
        // End of input: quit like `quit` (if the driver has ended already, there is nothing to quit).
        let _ = tx.blocking_send(Box::new(|app: &mut PromptApp, io: &mut Io<'_>, now| app.quit(io, now)));
    });
    say(&format!("softphone on udp {local}; others call sip:{user}@{local}"));
    say(HELP);
    let app = PromptApp { phone, quitting: false, reported: 0, digits_seen: 0, local };
    let app = switchboard::driver::run_with_commands(transport, endpoint, app, switchboard::driver::interrupted(), rx).await;
    app.phone
}
