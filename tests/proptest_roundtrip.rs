//! Property tests: random valid requests and responses built with the builder must parse back to
//! themselves, pass `validate()`, and give back through the typed accessors exactly the values they
//! were generated from.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use switchboard::message::{HeaderName, Host, Message, Method, NameAddr, Params, Uri};

const TOKEN: &str = "[A-Za-z0-9.!%*_+`'~-]{1,12}";

type ParamList = Vec<(String, Option<String>)>;

fn params_text(params: &ParamList) -> String {
    let mut s = String::new();
    for (n, v) in params {
        match v {
            Some(v) => write!(s, ";{n}={v}").unwrap(),
            None => write!(s, ";{n}").unwrap(),
        }
    }
    s
}

fn check_params(got: &Params<'_>, want: &ParamList) {
    let got: Vec<(&str, Option<&str>)> = got.iter().collect();
    let want: Vec<(&str, Option<&str>)> = want.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
    assert_eq!(got, want);
}

// ===== hosts and URIs =====

#[derive(Debug, Clone, Copy, PartialEq)]
enum HostKind {
    Domain,
    V4,
    V6,
}

#[derive(Debug, Clone)]
struct GenHost {
    /// Without brackets.
    text: String,
    kind: HostKind,
}

impl GenHost {
    fn wire(&self) -> String {
        match self.kind {
            HostKind::V6 => format!("[{}]", self.text),
            _ => self.text.clone(),
        }
    }

    fn expected(&self) -> Host<'_> {
        match self.kind {
            HostKind::Domain => Host::Domain(&self.text),
            HostKind::V4 => Host::Ipv4(&self.text),
            HostKind::V6 => Host::Ipv6(&self.text),
        }
    }
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    // Plenty of zero groups so `::` compression shows up.
    prop::array::uniform8(prop_oneof![Just(0u16), any::<u16>()]).prop_map(Ipv6Addr::from)
}

fn host() -> impl Strategy<Value = GenHost> {
    prop_oneof![
        vec("[a-zA-Z][a-zA-Z0-9-]{0,10}", 1..4).prop_map(|l| GenHost { text: l.join("."), kind: HostKind::Domain }),
        any::<[u8; 4]>().prop_map(|o| GenHost { text: Ipv4Addr::from(o).to_string(), kind: HostKind::V4 }),
        ipv6().prop_map(|a| GenHost { text: a.to_string(), kind: HostKind::V6 }),
    ]
}

/// One character of a URI user part: a literal userinfo character or a `%HH` escape of any octet.
#[derive(Debug, Clone)]
enum Piece {
    Lit(char),
    Esc(u8),
}

fn user() -> impl Strategy<Value = Vec<Piece>> {
    vec(
        prop_oneof![
            3 => proptest::char::ranges(vec!['a'..='z', 'A'..='Z', '0'..='9'].into()).prop_map(Piece::Lit),
            1 => prop::sample::select(b"-_.!~*'()&=+$/".to_vec()).prop_map(|b| Piece::Lit(b as char)),
            1 => any::<u8>().prop_map(Piece::Esc),
        ],
        1..12,
    )
}

fn uri_params() -> impl Strategy<Value = ParamList> {
    vec(("[a-z][a-z0-9-]{0,7}", option::of("[A-Za-z0-9._~-]{1,8}")), 0..3)
}

#[derive(Debug, Clone)]
struct GenSipUri {
    secure: bool,
    user: Option<Vec<Piece>>,
    password: Option<String>,
    host: GenHost,
    port: Option<u16>,
    params: ParamList,
    headers: Option<String>,
}

#[derive(Debug, Clone)]
enum GenUri {
    Sip(GenSipUri),
    Tel { number: String, params: ParamList },
}

impl GenUri {
    fn text(&self) -> String {
        match self {
            GenUri::Sip(u) => {
                let mut s = String::from(if u.secure { "sips:" } else { "sip:" });
                if let Some(user) = &u.user {
                    for p in user {
                        match p {
                            Piece::Lit(c) => s.push(*c),
                            Piece::Esc(b) => write!(s, "%{b:02X}").unwrap(),
                        }
                    }
                    if let Some(pw) = &u.password {
                        write!(s, ":{pw}").unwrap();
                    }
                    s.push('@');
                }
                s.push_str(&u.host.wire());
                if let Some(p) = u.port {
                    write!(s, ":{p}").unwrap();
                }
                s.push_str(&params_text(&u.params));
                if let Some(h) = &u.headers {
                    write!(s, "?{h}").unwrap();
                }
                s
            }
            GenUri::Tel { number, params } => format!("tel:{number}{}", params_text(params)),
        }
    }

    /// Whether the URI may be written without `<>` (RFC 3261 §20.10: no `;`, `?` or `,`).
    fn simple(&self) -> bool {
        !self.text().contains([';', '?', ','])
    }

    fn without_headers(mut self) -> GenUri {
        if let GenUri::Sip(u) = &mut self {
            u.headers = None;
        }
        self
    }

    fn check(&self, got: &Uri<'_>) {
        match (self, got) {
            (GenUri::Sip(w), Uri::Sip(g)) => {
                assert_eq!(g.secure, w.secure);
                let user_text = self.text();
                let user_text = w.user.as_ref().map(|_| {
                    let after = user_text.split_once(':').unwrap().1;
                    let info = &after[..after.find('@').unwrap()];
                    info.split(':').next().unwrap().to_owned()
                });
                assert_eq!(g.user, user_text.as_deref());
                let decoded: Option<Vec<u8>> = w.user.as_ref().map(|u| {
                    u.iter()
                        .flat_map(|p| match p {
                            Piece::Lit(c) => vec![*c as u8],
                            Piece::Esc(b) => vec![*b],
                        })
                        .collect()
                });
                assert_eq!(g.user_decoded().map(|c| c.into_owned()), decoded);
                assert_eq!(g.password, w.password.as_deref().filter(|_| w.user.is_some()));
                assert_eq!(g.host, w.host.expected());
                assert_eq!(g.port, w.port);
                check_params(&g.params, &w.params);
                assert_eq!(g.headers, w.headers.as_deref());
            }
            (GenUri::Tel { number, params }, Uri::Tel(t)) => {
                assert_eq!(t.number, number);
                check_params(&t.params, params);
            }
            _ => panic!("scheme differs: {self:?} vs {got:?}"),
        }
        assert_eq!(got.to_string(), self.text());
    }
}

prop_compose! {
    fn sip_uri()(
        secure in any::<bool>(),
        user in option::weighted(0.8, user()),
        password in option::weighted(0.2, "[A-Za-z0-9]{1,8}"),
        host in host(),
        port in option::of(any::<u16>()),
        params in uri_params(),
        headers in option::weighted(0.2, vec("[A-Za-z]{1,6}=[A-Za-z0-9]{1,6}", 1..3).prop_map(|h| h.join("&"))),
    ) -> GenUri {
        GenUri::Sip(GenSipUri { secure, user, password, host, port, params, headers })
    }
}

fn uri() -> impl Strategy<Value = GenUri> {
    prop_oneof![
        4 => sip_uri(),
        1 => ("\\+?[0-9][0-9.()-]{0,11}", uri_params()).prop_map(|(number, params)| GenUri::Tel { number, params }),
    ]
}

// ===== name-addr =====

#[derive(Debug, Clone)]
enum GenDisplay {
    Tokens(Vec<String>),
    /// Characters of a quoted-string, each with whether it is written as a quoted-pair.
    Quoted(Vec<(char, bool)>),
}

impl GenDisplay {
    fn raw(&self) -> String {
        match self {
            GenDisplay::Tokens(t) => t.join(" "),
            GenDisplay::Quoted(cs) => {
                let mut s = String::from("\"");
                for &(c, esc) in cs {
                    if c == '"' || c == '\\' || (esc && c.is_ascii()) {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
                s
            }
        }
    }

    fn unquoted(&self) -> String {
        match self {
            GenDisplay::Tokens(t) => t.join(" "),
            GenDisplay::Quoted(cs) => cs.iter().map(|&(c, _)| c).collect(),
        }
    }
}

fn display() -> impl Strategy<Value = GenDisplay> {
    let qchar = prop_oneof![
        6 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\u{a0}', '\u{2fff}'),
        1 => Just('😀'),
        1 => prop::sample::select(vec!['"', '\\', '<', '>', ',', ';']),
    ];
    prop_oneof![vec(TOKEN, 1..4).prop_map(GenDisplay::Tokens), vec((qchar, any::<bool>()), 0..16).prop_map(GenDisplay::Quoted),]
}

fn header_params() -> impl Strategy<Value = ParamList> {
    vec(("x[a-z0-9-]{0,6}", option::of(prop_oneof![TOKEN, "\"[A-Za-z0-9 ,;=:]{0,8}\""])), 0..3)
}

#[derive(Debug, Clone)]
struct GenNameAddr {
    display: Option<GenDisplay>,
    uri: GenUri,
    angle: bool,
    tag: Option<String>,
    params: ParamList,
}

impl GenNameAddr {
    fn text(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.display {
            write!(s, "{} ", d.raw()).unwrap();
        }
        if self.angle {
            write!(s, "<{}>", self.uri.text()).unwrap();
        } else {
            s.push_str(&self.uri.text());
        }
        if let Some(t) = &self.tag {
            write!(s, ";tag={t}").unwrap();
        }
        s + &params_text(&self.params)
    }

    fn check(&self, got: &NameAddr<'_>) {
        assert_eq!(got.display.map(str::to_owned), self.display.as_ref().map(GenDisplay::raw));
        assert_eq!(got.display_name().map(|d| d.into_owned()), self.display.as_ref().map(GenDisplay::unquoted));
        assert_eq!(got.angle, self.angle);
        assert_eq!(got.uri_text, self.uri.text());
        self.uri.check(&got.uri);
        assert_eq!(got.tag(), self.tag.as_deref());
        let mut all = self.params.clone();
        if let Some(t) = &self.tag {
            all.insert(0, ("tag".into(), Some(t.clone())));
        }
        check_params(&got.params, &all);
        assert_eq!(got.to_string(), self.text());
    }
}

/// A name-addr or addr-spec; `angle_only` for Route/Record-Route; `tag` for From/To.
fn name_addr(angle_only: bool, with_tag: bool) -> impl Strategy<Value = GenNameAddr> {
    (option::of(display()), uri(), any::<bool>(), option::weighted(0.9, TOKEN), header_params()).prop_map(
        move |(display, uri, angle, tag, params)| {
            let angle = angle || angle_only || display.is_some() || !uri.simple();
            GenNameAddr { display, uri, angle, tag: tag.filter(|_| with_tag), params }
        },
    )
}

// ===== Via =====

#[derive(Debug, Clone)]
struct GenVia {
    transport: String,
    host: GenHost,
    port: Option<u16>,
    branch: String,
    rport: Option<Option<u16>>,
    /// (address without brackets, written with brackets)
    received: Option<(String, bool)>,
}

impl GenVia {
    fn text(&self) -> String {
        let mut s = format!("SIP/2.0/{} {}", self.transport, self.host.wire());
        if let Some(p) = self.port {
            write!(s, ":{p}").unwrap();
        }
        write!(s, ";branch={}", self.branch).unwrap();
        match self.rport {
            Some(Some(p)) => write!(s, ";rport={p}").unwrap(),
            Some(None) => s.push_str(";rport"),
            None => {}
        }
        match &self.received {
            Some((r, true)) => write!(s, ";received=[{r}]").unwrap(),
            Some((r, false)) => write!(s, ";received={r}").unwrap(),
            None => {}
        }
        s
    }
}

prop_compose! {
    fn via()(
        transport in prop_oneof![
            prop::sample::select(vec!["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]).prop_map(str::to_owned),
            "[A-Z][A-Z0-9-]{0,6}",
        ],
        host in host(),
        port in option::of(any::<u16>()),
        branch in "[A-Za-z0-9.!%*_+`'~-]{1,16}".prop_map(|b| format!("z9hG4bK{b}")),
        rport in option::of(option::of(any::<u16>())),
        received in option::of(prop_oneof![
            any::<[u8; 4]>().prop_map(|o| (Ipv4Addr::from(o).to_string(), false)),
            (ipv6(), any::<bool>()).prop_map(|(a, b)| (a.to_string(), b)),
        ]),
    ) -> GenVia {
        GenVia { transport, host, port, branch, rport, received }
    }
}

// ===== whole messages =====

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        3 => prop::sample::select(vec![
            Method::Invite, Method::Ack, Method::Bye, Method::Cancel, Method::Register, Method::Options, Method::Info,
            Method::Update, Method::Prack, Method::Refer, Method::Subscribe, Method::Notify, Method::Message, Method::Publish,
        ]),
        1 => TOKEN.prop_map(|t| Method::from_token(&t).expect("a token is a method")),
    ]
}

#[derive(Debug, Clone)]
enum Start {
    Request(Method, GenUri),
    Response(u16, String),
}

/// A generated header section: groups of lines that keep their relative order (a list split over
/// lines), shuffled among themselves.
#[derive(Debug, Clone)]
struct GenMsg {
    start: Start,
    /// Each Via and whether it starts a new header line.
    vias: Vec<(GenVia, bool)>,
    from: GenNameAddr,
    to: GenNameAddr,
    call_id: String,
    cseq: (u32, Method),
    /// Contacts, and whether they go on one line.
    contacts: Option<(Vec<GenNameAddr>, bool)>,
    max_forwards: Option<u32>,
    routes: Vec<GenNameAddr>,
    record_routes: Vec<GenNameAddr>,
    allow: Option<Vec<String>>,
    supported: Option<Vec<String>>,
    extensions: Vec<(String, String)>,
    content_type: (String, String, ParamList),
    body: Vec<u8>,
    order: Vec<u8>,
}

fn start() -> impl Strategy<Value = Start> {
    prop_oneof![
        (method(), uri()).prop_map(|(m, u)| Start::Request(m, u.without_headers())),
        (100u16..=699, "[^\r\n]{0,24}").prop_map(|(c, r)| Start::Response(c, r)),
    ]
}

prop_compose! {
    fn dialog_part()(
        start in start(),
        vias in vec((via(), any::<bool>()), 1..5),
        from in name_addr(false, true),
        to in name_addr(false, true),
        call_id in r#"[A-Za-z0-9.!%*_+`'~()<>:\\"/\[\]?{}-]{1,24}(@[A-Za-z0-9.-]{1,16})?"#,
        seq in any::<u32>(),
        any_method in method(),
    ) -> (Start, Vec<(GenVia, bool)>, GenNameAddr, GenNameAddr, String, (u32, Method)) {
        // A request's CSeq carries its own method (RFC 3261 §8.1.1.5).
        let m = match &start { Start::Request(m, _) => m.clone(), Start::Response(..) => any_method };
        (start, vias, from, to, call_id, (seq, m))
    }
}

prop_compose! {
    fn message()(
        (start, vias, from, to, call_id, cseq) in dialog_part(),
        contacts in option::of((vec(name_addr(false, false), 1..4), any::<bool>())),
        max_forwards in option::of(any::<u32>()),
        routes in vec(name_addr(true, false), 0..3),
        record_routes in vec(name_addr(true, false), 0..3),
        allow in option::of(vec(TOKEN, 0..5)),
        supported in option::of(vec(TOKEN, 0..5)),
        extensions in vec(("[A-Za-z0-9-]{1,10}", r"[^\s\p{C}]([^\r\n\p{C}]{0,30}[^\s\p{C}])?"), 0..4),
        content_type in (
            prop_oneof![Just("application".to_owned()), Just("text".to_owned()), "x-[a-z]{1,6}"],
            "[a-z0-9][a-z0-9.+-]{0,10}",
            vec(("[a-z][a-z0-9-]{0,6}", option::of(TOKEN)), 0..2),
        ),
        body in prop_oneof![Just(Vec::new()), vec(any::<u8>(), 1..300)],
        order in vec(any::<u8>(), 16),
    ) -> GenMsg {
        let extensions = extensions.into_iter().enumerate().map(|(i, (n, v))| (format!("X-{i}-{n}"), v)).collect();
        GenMsg {
            start, vias, from, to, call_id, cseq, contacts, max_forwards, routes, record_routes, allow, supported, extensions,
            content_type, body, order,
        }
    }
}

/// Header lines in wire order: (known name or extension spelling, value).
type Lines = Vec<(Result<HeaderName, String>, String)>;

impl GenMsg {
    fn lines(&self) -> Lines {
        let mut groups: Vec<Lines> = Vec::new();
        let mut via_lines: Vec<String> = Vec::new();
        for (v, new_line) in &self.vias {
            match via_lines.last_mut() {
                Some(last) if !new_line => write!(last, ", {}", v.text()).unwrap(),
                _ => via_lines.push(v.text()),
            }
        }
        let known = |n: HeaderName, v: String| (Ok(n), v);
        groups.push(via_lines.into_iter().map(|v| known(HeaderName::Via, v)).collect());
        groups.push(vec![known(HeaderName::From, self.from.text())]);
        groups.push(vec![known(HeaderName::To, self.to.text())]);
        groups.push(vec![known(HeaderName::CallId, self.call_id.clone())]);
        groups.push(vec![known(HeaderName::CSeq, format!("{} {}", self.cseq.0, self.cseq.1))]);
        if let Some((cs, one_line)) = &self.contacts {
            let texts: Vec<String> = cs.iter().map(GenNameAddr::text).collect();
            groups.push(if *one_line {
                vec![known(HeaderName::Contact, texts.join(", "))]
            } else {
                texts.into_iter().map(|t| known(HeaderName::Contact, t)).collect()
            });
        }
        if let Some(mf) = self.max_forwards {
            groups.push(vec![known(HeaderName::MaxForwards, mf.to_string())]);
        }
        for (name, list) in [(HeaderName::Route, &self.routes), (HeaderName::RecordRoute, &self.record_routes)] {
            if !list.is_empty() {
                groups.push(vec![known(name, list.iter().map(GenNameAddr::text).collect::<Vec<_>>().join(","))]);
            }
        }
        for (name, toks) in [(HeaderName::Allow, &self.allow), (HeaderName::Supported, &self.supported)] {
            if let Some(t) = toks {
                groups.push(vec![known(name, t.join(", "))]);
            }
        }
        for (n, v) in &self.extensions {
            groups.push(vec![(Err(n.clone()), v.clone())]);
        }
        // Via stays on top (as a proxy or UAC writes it); the rest is shuffled.
        let mut keyed: Vec<(u8, Lines)> =
            groups.into_iter().enumerate().map(|(i, g)| (if i == 0 { 0 } else { 1 + self.order[i % 16] / 2 }, g)).collect();
        keyed.sort_by_key(|(k, _)| *k);
        keyed.into_iter().flat_map(|(_, g)| g).collect()
    }

    fn content_type_text(&self) -> String {
        let (k, s, p) = &self.content_type;
        format!("{k}/{s}{}", params_text(p))
    }

    fn build(&self) -> Message {
        let mut b = match &self.start {
            Start::Request(m, u) => Message::request(m.clone(), u.text()),
            Start::Response(c, r) => Message::response(*c, r),
        };
        for (name, value) in self.lines() {
            b = match name {
                Ok(n) => b.header(n, value),
                Err(n) => b.header_named(&n, value),
            };
        }
        b.body(&self.content_type_text(), &self.body)
    }

    fn check(&self, m: &Message) {
        match &self.start {
            Start::Request(method, uri) => {
                assert_eq!(m.method(), Some(method));
                assert_eq!(m.request_uri_str(), Some(uri.text().as_str()));
                uri.check(&m.request_uri().expect("Request-URI"));
                m.check_required().expect("check_required");
            }
            Start::Response(code, reason) => {
                assert_eq!(m.status(), Some(*code));
                assert_eq!(m.reason(), Some(reason.as_bytes()));
            }
        }
        let vias: Vec<_> = m.vias().map(|v| v.expect("Via")).collect();
        assert_eq!(vias.len(), self.vias.len());
        for (g, (w, _)) in vias.iter().zip(&self.vias) {
            assert_eq!(g.protocol, "SIP");
            assert_eq!(g.version, "2.0");
            assert_eq!(g.transport, w.transport);
            assert_eq!(g.host, w.host.expected());
            assert_eq!(g.port, w.port);
            assert_eq!(g.branch(), Some(w.branch.as_str()));
            assert!(g.has_rfc3261_branch());
            assert_eq!(g.rport(), w.rport);
            assert_eq!(g.received(), w.received.as_ref().map(|(r, _)| r.as_str()));
            assert_eq!(g.to_string(), w.text());
        }
        assert_eq!(m.via().expect("top Via"), vias[0]);
        self.from.check(&m.from().expect("From"));
        self.to.check(&m.to().expect("To"));
        assert_eq!(m.call_id(), Ok(self.call_id.as_str()));
        let cseq = m.cseq().expect("CSeq");
        assert_eq!((cseq.seq, &cseq.method), (self.cseq.0, &self.cseq.1));
        let contacts: Vec<_> = m.contacts().map(|c| c.expect("Contact")).collect();
        let want: &[GenNameAddr] = self.contacts.as_ref().map_or(&[], |(c, _)| c);
        assert_eq!(contacts.len(), want.len());
        for (g, w) in contacts.iter().zip(want) {
            w.check(g);
        }
        for (got, want) in [(m.routes(), &self.routes), (m.record_routes(), &self.record_routes)] {
            let got: Vec<_> = got.map(|r| r.expect("route")).collect();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                w.check(g);
            }
        }
        assert_eq!(m.max_forwards(), Ok(self.max_forwards));
        for (name, toks) in [(HeaderName::Allow, &self.allow), (HeaderName::Supported, &self.supported)] {
            let got: Vec<&str> = m.tokens(name).map(|t| t.expect("token")).collect();
            assert_eq!(got, toks.as_deref().unwrap_or_default());
        }
        for (n, v) in &self.extensions {
            assert_eq!(m.other_header(n).collect::<Vec<_>>(), [v.as_bytes()]);
        }
        assert_eq!(m.body(), &self.body[..]);
        assert_eq!(m.content_length(), Some(self.body.len() as u32));
        match m.content_type().expect("Content-Type") {
            None => assert!(self.body.is_empty()),
            Some(ct) => {
                assert!(!self.body.is_empty());
                let (k, s, p) = &self.content_type;
                assert_eq!((ct.kind, ct.subtype), (k.as_str(), s.as_str()));
                check_params(&ct.params, p);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn built_messages_parse_back_to_themselves(g in message()) {
        let m = g.build();
        let parsed = Message::parse(m.as_bytes().clone());
        prop_assert_eq!(parsed.as_ref(), Ok(&m));
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.as_bytes(), m.as_bytes());
        if let Err(e) = parsed.validate() {
            return Err(TestCaseError::fail(format!("validate: {e}\n{m}")));
        }
        g.check(&parsed);
        g.check(&m);
    }

    #[test]
    fn uris_round_trip(u in uri()) {
        let text = u.text();
        let parsed = Uri::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        u.check(&parsed);
        let again = parsed.to_string();
        prop_assert_eq!(Uri::parse(&again), Ok(parsed));
    }

    #[test]
    fn name_addrs_round_trip(a in name_addr(false, true)) {
        let text = a.text();
        let parsed = NameAddr::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        a.check(&parsed);
        let again = parsed.to_string();
        prop_assert_eq!(NameAddr::parse(&again), Ok(parsed));
    }
}
