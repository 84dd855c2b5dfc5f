//! User-agent parsing for analytics.js events (spec §3.9).
//!
//! The classic integration used Amplitude's fork of `ua-parser-js` and set `os_name` to the
//! browser name, `os_version` to the browser's major version and `device_model` to the operating
//! system. We parse with `woothee` (pure Rust, no regex tables to load at cold start) and rename
//! its families to the ua-parser-js spelling, so Amplitude charts keep the names they had.

use std::borrow::Cow;
use std::cell::RefCell;

/// What the classic mapping takes from a user agent. `None` keeps the `context` value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedAgent {
    pub browser: Option<Cow<'static, str>>,
    pub browser_major: Option<String>,
    pub os: Option<Cow<'static, str>>,
}

/// How many agents are remembered per thread.
const REMEMBERED: usize = 32;
/// The longest agent remembered. Browsers send a few hundred bytes; a longer one (a hostile
/// message can carry megabytes) is parsed each time, so the memory stays at most
/// 32 × 1 KB per thread, however warm the instance.
const REMEMBERED_LEN: usize = 1024;

thread_local! {
    /// Event streams repeat the same agents (a device's events, the popular browser versions),
    /// and parsing one is a tenth of mapping an event: the last agents parsed are remembered,
    /// the oldest forgotten first. Pure: the result depends only on the input.
    static RECENT: RefCell<(Vec<(String, ParsedAgent)>, usize)> =
        const { RefCell::new((Vec::new(), 0)) };
}

/// Parses a user-agent string.
pub fn parse(agent: &str) -> ParsedAgent {
    let hit = RECENT.with_borrow(|(recent, _)| {
        recent
            .iter()
            .find(|(ua, _)| ua == agent)
            .map(|(_, p)| p.clone())
    });
    if let Some(hit) = hit {
        return hit;
    }
    let parsed = parse_uncached(agent);
    if agent.len() > REMEMBERED_LEN {
        return parsed;
    }
    RECENT.with_borrow_mut(|(recent, next)| {
        let entry = (agent.to_owned(), parsed.clone());
        if recent.len() < REMEMBERED {
            recent.push(entry);
        } else if let Some(slot) = recent.get_mut(*next) {
            *slot = entry;
            *next = (*next + 1) % REMEMBERED;
        }
    });
    parsed
}

fn parse_uncached(agent: &str) -> ParsedAgent {
    let Some(r) = woothee::parser::Parser::new().parse(agent) else {
        return ParsedAgent::default();
    };
    let known = |s: &str| !s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN;
    let os = known(r.os).then(|| os_name(r.os));
    // Crawlers and HTTP libraries are not browsers; ua-parser-js names no browser for them.
    let is_browser = r.browser_type == "browser";
    let browser = (is_browser && known(r.name)).then(|| browser_name(r.name, os.as_deref()));
    let browser_major = (is_browser && known(r.version))
        .then(|| r.version.split('.').next().unwrap_or_default().to_owned())
        .filter(|v| !v.is_empty());
    ParsedAgent {
        browser,
        browser_major,
        os,
    }
}

/// woothee OS families → ua-parser-js `os.name`.
fn os_name(os: &str) -> Cow<'static, str> {
    Cow::Borrowed(match os {
        o if o.starts_with("Windows") => "Windows",
        "Mac OSX" | "Mac OS Classic" => "Mac OS",
        "iPhone" | "iPad" | "iPod" | "iOS" => "iOS",
        "ChromeOS" => "Chromium OS",
        "BlackBerry" | "BlackBerry 10" => "BlackBerry",
        other => return Cow::Owned(other.to_owned()),
    })
}

/// woothee browser names → ua-parser-js `browser.name`.
fn browser_name(name: &str, os: Option<&str>) -> Cow<'static, str> {
    Cow::Borrowed(match (name, os) {
        ("Internet Explorer", _) => "IE",
        ("Safari", Some("iOS")) => "Mobile Safari",
        ("Opera", _) => "Opera",
        ("Webview", Some("iOS")) => "WebKit",
        ("Webview", _) => "Chrome WebView",
        ("Samsung Internet Browser", _) | ("SamsungBrowser", _) => "Samsung Browser",
        (other, _) => return Cow::Owned(other.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_agents_give_what_parsing_gives_also_past_the_memory() {
        let agents: Vec<String> = (0..REMEMBERED + 9)
            .map(|i| format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0"))
            .collect();
        for _ in 0..3 {
            for agent in &agents {
                assert_eq!(parse(agent), parse_uncached(agent));
            }
        }
        assert_eq!(parse(&agents[3]).browser_major.as_deref(), Some("3"));
    }

    /// An agent past [`REMEMBERED_LEN`] is parsed as any other but not kept.
    #[test]
    fn a_long_agent_is_parsed_not_remembered() {
        let long = format!(
            "Mozilla/5.0 (Windows NT 6.2; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/58.0.3029.110 Safari/537.36 {}",
            "x".repeat(REMEMBERED_LEN)
        );
        let short = long.get(..REMEMBERED_LEN).unwrap();
        assert_eq!(parse(&long), parse_uncached(&long));
        assert_eq!(parse(&long).browser.as_deref(), Some("Chrome"));
        parse(short);
        RECENT.with_borrow(|(recent, _)| {
            assert!(recent.iter().all(|(ua, _)| ua.len() <= REMEMBERED_LEN));
            assert!(recent.iter().any(|(ua, _)| ua == short));
        });
    }

    #[test]
    fn spec_3_9_fixture_agent_is_ie_10_on_windows() {
        let p = parse("Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)");
        assert_eq!(
            p,
            ParsedAgent {
                browser: Some("IE".into()),
                browser_major: Some("10".into()),
                os: Some("Windows".into())
            }
        );
    }

    #[test]
    fn spec_3_9_names_follow_ua_parser_js() {
        let chrome_mac = parse(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        assert_eq!(chrome_mac.browser.as_deref(), Some("Chrome"));
        assert_eq!(chrome_mac.browser_major.as_deref(), Some("120"));
        assert_eq!(chrome_mac.os.as_deref(), Some("Mac OS"));
        let iphone = parse(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(
            (iphone.browser.as_deref(), iphone.os.as_deref()),
            (Some("Mobile Safari"), Some("iOS"))
        );
    }

    #[test]
    fn unknown_agent_yields_nothing() {
        assert_eq!(parse("curl/8.0"), ParsedAgent::default());
        assert_eq!(parse(""), ParsedAgent::default());
    }
}
