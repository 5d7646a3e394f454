//! Header names: the ones this stack understands, their compact forms (RFC 3261 §7.3.3, §20),
//! and case-insensitive lookup without allocation.

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal $(, $compact:literal)? ;)*) => {
        /// A header name this stack knows, or [`HeaderName::Other`] for any extension header (kept
        /// byte for byte under its own spelling). Matching is case-insensitive and compact forms map to
        /// their long form (`v` is [`HeaderName::Via`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any header this stack does not interpret.
            Other,
        }

        impl HeaderName {
            /// The canonical long spelling, e.g. `Call-ID`; `""` for [`HeaderName::Other`].
            pub fn as_str(self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other => "",
                }
            }

            /// The compact form (RFC 3261 §7.3.3), if the header has one.
            pub fn compact(self) -> Option<char> {
                match self {
                    $( $( HeaderName::$variant => Some($compact), )? )*
                    _ => None,
                }
            }

            /// Looks a name up, ignoring ASCII case; compact forms included. Unknown names give
            /// [`HeaderName::Other`].
            pub fn from_bytes(name: &[u8]) -> HeaderName {
                if name.len() == 1 {
                    let c = name[0].to_ascii_lowercase() as char;
                    $( $( if c == $compact { return HeaderName::$variant; } )? )*
                    return HeaderName::Other;
                }
                // Compare the first byte before the whole name: most candidates fail there.
                let first = name.first().map_or(0, u8::to_ascii_lowercase);
                $(
                    if name.len() == $canon.len()
                        && first == $canon.as_bytes()[0].to_ascii_lowercase()
                        && name.eq_ignore_ascii_case($canon.as_bytes())
                    {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other
            }
        }
    };
}

header_names! {
    /// `Via` / `v` (RFC 3261 §20.42).
    Via => "Via", 'v';
    /// `From` / `f` (§20.20).
    From => "From", 'f';
    /// `To` / `t` (§20.39).
    To => "To", 't';
    /// `Call-ID` / `i` (§20.8).
    CallId => "Call-ID", 'i';
    /// `CSeq` (§20.16).
    CSeq => "CSeq";
    /// `Contact` / `m` (§20.10).
    Contact => "Contact", 'm';
    /// `Max-Forwards` (§20.22).
    MaxForwards => "Max-Forwards";
    /// `Content-Length` / `l` (§20.14).
    ContentLength => "Content-Length", 'l';
    /// `Content-Type` / `c` (§20.15).
    ContentType => "Content-Type", 'c';
    /// `Content-Encoding` / `e` (§20.12).
    ContentEncoding => "Content-Encoding", 'e';
    /// `Route` (§20.34).
    Route => "Route";
    /// `Record-Route` (§20.30).
    RecordRoute => "Record-Route";
    /// `Expires` (§20.19).
    Expires => "Expires";
    /// `Min-Expires` (§20.23).
    MinExpires => "Min-Expires";
    /// `Allow` (§20.5).
    Allow => "Allow";
    /// `Supported` / `k` (§20.37).
    Supported => "Supported", 'k';
    /// `Require` (§20.32).
    Require => "Require";
    /// `Proxy-Require` (§20.29).
    ProxyRequire => "Proxy-Require";
    /// `Unsupported` (§20.40).
    Unsupported => "Unsupported";
    /// `Authorization` (§20.7).
    Authorization => "Authorization";
    /// `Proxy-Authorization` (§20.28).
    ProxyAuthorization => "Proxy-Authorization";
    /// `WWW-Authenticate` (§20.44).
    WwwAuthenticate => "WWW-Authenticate";
    /// `Proxy-Authenticate` (§20.27).
    ProxyAuthenticate => "Proxy-Authenticate";
    /// `Authentication-Info` (§20.6).
    AuthenticationInfo => "Authentication-Info";
    /// `Session-Expires` / `x` (RFC 4028 §4).
    SessionExpires => "Session-Expires", 'x';
    /// `Min-SE` (RFC 4028 §5).
    MinSe => "Min-SE";
    /// `Reason` (RFC 3326).
    Reason => "Reason";
    /// `User-Agent` (§20.41).
    UserAgent => "User-Agent";
    /// `Server` (§20.35).
    Server => "Server";
    /// `Date` (§20.17).
    Date => "Date";
    /// `Subject` / `s` (§20.36).
    Subject => "Subject", 's';
    /// `Accept` (§20.1).
    Accept => "Accept";
    /// `Event` / `o` (RFC 6665).
    Event => "Event", 'o';
    /// `Allow-Events` / `u` (RFC 6665).
    AllowEvents => "Allow-Events", 'u';
    /// `Refer-To` / `r` (RFC 3515).
    ReferTo => "Refer-To", 'r';
    /// `Referred-By` / `b` (RFC 3892).
    ReferredBy => "Referred-By", 'b';
    /// `Retry-After` (§20.33).
    RetryAfter => "Retry-After";
    /// `Warning` (§20.43).
    Warning => "Warning";
    /// `Timestamp` (§20.38).
    Timestamp => "Timestamp";
    /// `RSeq` (RFC 3262).
    RSeq => "RSeq";
    /// `RAck` (RFC 3262).
    RAck => "RAck";
}

impl HeaderName {
    /// Headers that may appear at most once in a message (RFC 3261 §7.3.1: only list-valued headers
    /// may repeat).
    pub fn is_single(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Expires
                | HeaderName::MinExpires
                | HeaderName::SessionExpires
                | HeaderName::MinSe
                | HeaderName::Date
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn lookup_is_case_insensitive_with_compact_forms() {
        assert_eq!(HeaderName::from_bytes(b"MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"I"), HeaderName::CallId);
        for (c, h) in [
            ('i', HeaderName::CallId),
            ('m', HeaderName::Contact),
            ('f', HeaderName::From),
            ('t', HeaderName::To),
            ('v', HeaderName::Via),
            ('l', HeaderName::ContentLength),
            ('c', HeaderName::ContentType),
            ('k', HeaderName::Supported),
            ('s', HeaderName::Subject),
            ('e', HeaderName::ContentEncoding),
            ('o', HeaderName::Event),
            ('u', HeaderName::AllowEvents),
            ('r', HeaderName::ReferTo),
            ('b', HeaderName::ReferredBy),
            ('x', HeaderName::SessionExpires),
        ] {
            assert_eq!(HeaderName::from_bytes(c.to_string().as_bytes()), h);
            assert_eq!(h.compact(), Some(c));
        }
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"www-authenticate").as_str(), "WWW-Authenticate");
    }
}
