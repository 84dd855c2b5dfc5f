//! User-agent parsing for analytics.js events (spec §3.9).
//!
//! The classic integration set `os_name` to the browser name, `os_version` to the browser's
//! major version and `device_model` to the operating system, as Amplitude's fork of
//! `ua-parser-js` names them. Its rules are in [`rules`], matched with the `regex` crate's
//! engine; the names are the fork's, so Amplitude charts keep the names they had ("Chrome
//! Mobile", "Mac", "iPhone").

mod rules;

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::{LazyLock, OnceLock};

use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet, meta};

use rules::{Name, Version};

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
    /// and parsing a new one (2.6–4.7 µs, a release build) costs about as much as mapping an
    /// event: the last agents parsed are remembered, the oldest forgotten first. Pure: the
    /// result depends only on the input.
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
    let text = agent.as_bytes();
    let browser = BROWSERS.first(text).and_then(|(at, found)| {
        let (_, name, version) = rules::BROWSERS.get(at)?;
        let version = match *version {
            Version::Group(group) => group_text(&found, group).map(str::to_owned),
            Version::OldSafari(group) => group_text(&found, group).and_then(old_safari),
        };
        Some((name_of(&found, *name), version))
    });
    let (browser, version) = browser.unwrap_or_default();
    let os = OPERATING_SYSTEMS.first(text).and_then(|(at, found)| {
        let (_, name) = rules::OPERATING_SYSTEMS.get(at)?;
        name_of(&found, *name)
    });
    ParsedAgent {
        browser,
        // The fork's `major`: the version up to its first dot.
        browser_major: version
            .and_then(|v| v.split('.').next().map(str::to_owned))
            .filter(|v| !v.is_empty()),
        os,
    }
}

static BROWSERS: LazyLock<FirstMatch> =
    LazyLock::new(|| FirstMatch::new(rules::BROWSERS.iter().map(|(pattern, ..)| *pattern)));

static OPERATING_SYSTEMS: LazyLock<FirstMatch> =
    LazyLock::new(|| FirstMatch::new(rules::OPERATING_SYSTEMS.iter().map(|(pattern, _)| *pattern)));

/// Rules tried in order, the first that matches winning, as the fork tries them. One set of
/// all the patterns says which match (one pass over the agent); only the first one's own
/// pattern is then run, to read its groups. That pattern is compiled the first time it wins:
/// compiling all 75 at the first agent took about 20 ms (a release test build).
///
/// Built on `regex-automata`'s meta engine (the `regex` crate's own) for one setting the
/// `regex` crate does not offer: no literal prefilter. Finding the rules' literals (each in
/// every mix of upper and lower case) was most of building the two sets: 3.8–4.9 ms with it,
/// 1.3–1.6 ms without, once per process, and matching a browser's agent takes the same
/// 0.9–1.1 µs either way (a release test build).
struct FirstMatch {
    any: meta::Regex,
    patterns: Vec<&'static str>,
    each: Vec<OnceLock<meta::Regex>>,
}

/// The two sides of a rule's match: the text and where its groups are.
struct Found<'t> {
    text: &'t [u8],
    groups: Captures,
}

impl FirstMatch {
    fn new(patterns: impl Iterator<Item = &'static str>) -> Self {
        let patterns: Vec<_> = patterns.collect();
        let any = builder(
            engine_config()
                .match_kind(MatchKind::All)
                .which_captures(WhichCaptures::None),
        )
        .build_many(&patterns)
        .expect("the user-agent rules compile (test: every_rule_compiles)");
        let each = patterns.iter().map(|_| OnceLock::new()).collect();
        FirstMatch {
            any,
            patterns,
            each,
        }
    }

    /// The first rule that matches `text`, and its groups.
    fn first<'t>(&self, text: &'t [u8]) -> Option<(usize, Found<'t>)> {
        let mut matching = PatternSet::new(self.any.pattern_len());
        self.any
            .which_overlapping_matches(&Input::new(text), &mut matching);
        let at = matching.iter().next()?.as_usize();
        let pattern = self.patterns.get(at)?;
        let regex = self.each.get(at)?.get_or_init(|| compile(pattern));
        let mut groups = regex.create_captures();
        regex.captures(Input::new(text), &mut groups);
        groups.is_match().then_some((at, Found { text, groups }))
    }
}

/// Patterns read as JavaScript reads them: `\w`, `\d` and `\s` ASCII, letters compared
/// without case, `.` stopping at `\r` and `\n`, on bytes (not necessarily UTF-8). Here `.` is
/// one byte, where JavaScript's is one UTF-16 unit; the rules only use it repeated (`.+`,
/// `.*`, `.+?`), which reads a character of any length either way.
fn javascript_syntax() -> syntax::Config {
    syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(true)
        .crlf(true)
}

/// What the set and each rule's own regex share, so a rule the set finds is the rule its own
/// regex reads: matches may be empty anywhere (the text is bytes), and no literal prefilter.
fn engine_config() -> meta::Config {
    meta::Config::new().utf8_empty(false).auto_prefilter(false)
}

/// A builder reading patterns as JavaScript does, with `config`.
fn builder(config: meta::Config) -> meta::Builder {
    let mut builder = meta::Builder::new();
    builder.syntax(javascript_syntax()).configure(config);
    builder
}

/// One rule's pattern, read as the set reads it (the first match wins, as in JavaScript).
fn compile(pattern: &str) -> meta::Regex {
    builder(engine_config())
        .build(pattern)
        .expect("the user-agent rules compile (test: every_rule_compiles)")
}

/// A group's text; the fork treats an empty one as absent.
fn group_text<'t>(found: &Found<'t>, group: usize) -> Option<&'t str> {
    let text = found.text.get(found.groups.get_group(group)?.range())?;
    std::str::from_utf8(text).ok().filter(|t| !t.is_empty())
}

fn name_of(found: &Found<'_>, name: Name) -> Option<Cow<'static, str>> {
    let owned = |group| group_text(found, group).map(|t| Cow::Owned(t.to_owned()));
    match name {
        Name::Fixed(name) => Some(Cow::Borrowed(name)),
        Name::Group(group) => owned(group),
        Name::GroupSpaced(group) => owned(group).map(|t| Cow::Owned(t.replace('_', " "))),
        Name::Windows(group) => owned(group).map(|t| {
            if t.to_ascii_lowercase().contains("windows phone os") {
                Cow::Borrowed("Windows Phone")
            } else {
                t
            }
        }),
    }
}

/// A Safari-before-3.0 WebKit build (`/419.3`) as the fork maps it to a version.
fn old_safari(build: &str) -> Option<String> {
    let lower = build.to_ascii_lowercase();
    match rules::OLD_SAFARI.iter().find(|(_, b)| lower.contains(b)) {
        Some((version, _)) => version.map(str::to_owned),
        None => Some(build.to_owned()),
    }
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

    /// §3.9: every agent of `classic_cases.json` (the fork's own test agents and agents of
    /// today) reads as the fork at `fbdb1dc` reads it: Chrome on a Mac is "Chrome" 120 on "Mac",
    /// Safari on an iPhone "Mobile Safari" on "iPhone", Chrome on Android "Chrome Mobile" with
    /// no version, Edge of 2024 "Chrome" (the fork predates it).
    #[test]
    fn spec_3_9_agents_read_as_the_classic_parser_reads_them() {
        /// An agent, and the fork's browser name, major version and OS name.
        type Case = (String, Option<String>, Option<String>, Option<String>);
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("user_agent/classic_cases.json")).unwrap();
        assert_eq!(cases.len(), 179);
        let differ: Vec<_> = cases
            .iter()
            .filter(|(agent, browser, major, os)| {
                let p = parse_uncached(agent);
                (
                    p.browser.as_deref(),
                    p.browser_major.as_deref(),
                    p.os.as_deref(),
                ) != (browser.as_deref(), major.as_deref(), os.as_deref())
            })
            .collect();
        assert!(differ.is_empty(), "{} differ: {differ:#?}", differ.len());
        let chrome_mac = parse(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        assert_eq!(
            chrome_mac,
            ParsedAgent {
                browser: Some("Chrome".into()),
                browser_major: Some("120".into()),
                os: Some("Mac".into())
            }
        );
    }

    /// Each rule compiles: its own pattern is compiled the first time it wins, the two sets of
    /// all the patterns at the first agent, so a pattern that does not would fail late.
    #[test]
    fn every_rule_compiles() {
        for (pattern, ..) in rules::BROWSERS {
            compile(pattern);
        }
        for (pattern, _) in rules::OPERATING_SYSTEMS {
            compile(pattern);
        }
        assert_eq!(
            (
                BROWSERS.any.pattern_len(),
                OPERATING_SYSTEMS.any.pattern_len()
            ),
            (rules::BROWSERS.len(), rules::OPERATING_SYSTEMS.len())
        );
    }

    /// The patterns read text as JavaScript regular expressions do: `.` stops at `\r`, `\w`
    /// and `\s` are ASCII, letters match either case, and no rule has a lone `.` (one byte
    /// here, one UTF-16 unit there).
    #[test]
    fn patterns_read_as_javascript_reads_them() {
        assert!(!compile("a.b").is_match(&b"a\rb"[..]));
        assert!(compile("a.+b").is_match("aéb".as_bytes()));
        let single_dot = |p: &str| p.replace(".+", "").replace(".*", "").contains(['.']);
        assert!(
            rules::BROWSERS
                .iter()
                .map(|(p, ..)| *p)
                .chain(rules::OPERATING_SYSTEMS.iter().map(|(p, _)| *p))
                .all(|p| !single_dot(&p.replace(r"\.", "")))
        );
        assert!(!compile(r"a\wb").is_match("aéb".as_bytes()));
        assert!(!compile(r"a\sb").is_match("a\u{a0}b".as_bytes()));
        assert!(compile("chrome").is_match(&b"CHROME"[..]));
    }

    /// Before 3.0, Safari named its WebKit build; the fork maps the builds it knows.
    #[test]
    fn old_safari_builds_map_to_versions() {
        assert_eq!(old_safari("/419.3").as_deref(), Some("2.0.4"));
        assert_eq!(old_safari("/85.7").as_deref(), Some("1.0"));
        assert_eq!(old_safari("/312").as_deref(), Some("1.3"));
        assert_eq!(old_safari("/5"), None);
    }

    #[test]
    fn unknown_agent_yields_nothing() {
        assert_eq!(parse("curl/8.0"), ParsedAgent::default());
        assert_eq!(parse(""), ParsedAgent::default());
    }
}
