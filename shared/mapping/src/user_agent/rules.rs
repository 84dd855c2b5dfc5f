//! The browser and operating-system rules of `ua-parser-js` 0.7.10 (Faisal Salman, MIT) as
//! Amplitude forked it (`amplitude/ua-parser-js` at `fbdb1dc`, 2016-05-24), the version the
//! classic integration pinned in its `package.json` and the one Amplitude's own JavaScript SDK
//! named browsers with: "Chrome Mobile", "Mac", "iPhone" and "iPad" are the fork's names.
//!
//! Each rule is one of the fork's regular expressions, in its order (the first that matches
//! wins), with what the fork takes from it. The patterns are the fork's, written for the
//! `regex` crate's syntax (matched by its engine, `regex-automata`): ASCII classes,
//! case-insensitive. The fork's lookaheads, which the crate does not have, are written without
//! them where the rule's result is the same (each marked *rewritten*).

/// Where a rule's name comes from.
#[derive(Debug, Clone, Copy)]
pub enum Name {
    /// The text of this capture group, as the agent writes it.
    Group(usize),
    /// The text of this capture group with each `_` a space.
    GroupSpaced(usize),
    /// The text of this capture group, "Windows Phone" where it says "Windows Phone OS".
    Windows(usize),
    /// A fixed name.
    Fixed(&'static str),
}

/// Where a browser rule's version comes from.
#[derive(Debug, Clone, Copy)]
pub enum Version {
    /// The text of this capture group (none where the pattern has no such group).
    Group(usize),
    /// Safari before 3.0: this group's WebKit build mapped to a Safari version.
    OldSafari(usize),
}

/// A browser: pattern, name, version.
pub type BrowserRule = (&'static str, Name, Version);

/// An operating system: pattern, name.
pub type OsRule = (&'static str, Name);

use Name::{Fixed, Group, GroupSpaced, Windows};
use Version::{Group as V, OldSafari};

pub const BROWSERS: &[BrowserRule] = &[
    // Presto based
    (r"(opera\smini)\/([\w\.-]+)", Group(1), V(2)),
    (
        r"(opera\s[mobiletab]+).+version\/([\w\.-]+)",
        Group(1),
        V(2),
    ),
    (r"(opera).+version\/([\w\.]+)", Group(1), V(2)),
    (r"(opera)[\/\s]+([\w\.]+)", Group(1), V(2)),
    (r"(OPiOS)[\/\s]+([\w\.]+)", Fixed("Opera Mini"), V(2)),
    (r"\s(opr)\/([\w\.]+)", Fixed("Opera"), V(2)),
    // Mixed
    (r"(kindle)\/([\w\.]+)", Group(1), V(2)),
    (
        r"(lunascape|maxthon|netfront|jasmine|blazer)[\/\s]?([\w\.]+)*",
        Group(1),
        V(2),
    ),
    // Trident based
    (
        r"(avant\s|iemobile|slim|baidu)(?:browser)?[\/\s]?([\w\.]*)",
        Group(1),
        V(2),
    ),
    (r"(?:ms|\()(ie)\s([\w\.]+)", Group(1), V(2)),
    // Webkit/KHTML based
    (r"(rekonq)\/([\w\.]+)*", Group(1), V(2)),
    (
        r"(chromium|flock|rockmelt|midori|epiphany|silk|skyfire|ovibrowser|bolt|iron|vivaldi|iridium|phantomjs)\/([\w\.-]+)",
        Group(1),
        V(2),
    ),
    (
        r"(trident).+rv[:\s]([\w\.]+).+like\sgecko",
        Fixed("IE"),
        V(2),
    ),
    (r"(edge)\/((\d+)?[\w\.]+)", Group(1), V(2)),
    (r"(yabrowser)\/([\w\.]+)", Fixed("Yandex"), V(2)),
    (r"(comodo_dragon)\/([\w\.]+)", GroupSpaced(1), V(2)),
    (
        r"((?:android.+)crmo|crios)\/([\w\.]+)",
        Fixed("Chrome Mobile"),
        V(2),
    ),
    // The fork's rule reads its one group as the name it then replaces, so Chrome on Android
    // has no version: "Chrome Mobile" with no major.
    (
        r"android.+chrome\/([\w\.]+)\s+(?:mobile\s?safari)",
        Fixed("Chrome Mobile"),
        V(2),
    ),
    (
        r"(chrome|omniweb|arora|[tizenoka]{5}\s?browser)\/v?([\w\.]+)",
        Group(1),
        V(2),
    ),
    (r"(qqbrowser)[\/\s]?([\w\.]+)", Group(1), V(2)),
    (r"(uc\s?browser)[\/\s]?([\w\.]+)", Fixed("UCBrowser"), V(2)),
    (
        r"ucweb.+(ucbrowser)[\/\s]?([\w\.]+)",
        Fixed("UCBrowser"),
        V(2),
    ),
    (r"JUC.+(ucweb)[\/\s]?([\w\.]+)", Fixed("UCBrowser"), V(2)),
    (r"(dolfin)\/([\w\.]+)", Fixed("Dolphin"), V(2)),
    (
        r"XiaoMi\/MiuiBrowser\/([\w\.]+)",
        Fixed("MIUI Browser"),
        V(1),
    ),
    (
        r"android.+version\/([\w\.]+)\s+(?:mobile\s?safari|safari)",
        Fixed("Android Browser"),
        V(1),
    ),
    (r"FBAV\/([\w\.]+);", Fixed("Facebook"), V(1)),
    (r"fxios\/([\w\.-]+)", Fixed("Firefox"), V(1)),
    (
        r"version\/([\w\.]+).+?mobile\/\w+\s(safari)",
        Fixed("Mobile Safari"),
        V(1),
    ),
    (
        r"version\/([\w\.]+).+?(mobile\s?safari|safari)",
        Group(2),
        V(1),
    ),
    (
        r"webkit.+?(mobile\s?safari|safari)(\/[\w\.]+)",
        Group(1),
        OldSafari(2),
    ),
    (r"(konqueror)\/([\w\.]+)", Group(1), V(2)),
    (r"(webkit|khtml)\/([\w\.]+)", Group(1), V(2)),
    // The fork's pattern has `\\s`: a backslash, then `s`.
    (r"(blackberry)\\s?\/([\w\.]+)", Fixed("BlackBerry"), V(2)),
    // Gecko based
    (r"(navigator|netscape)\/([\w\.-]+)", Fixed("Netscape"), V(2)),
    (r"(swiftfox)", Group(1), V(2)),
    (
        r"(icedragon|iceweasel|camino|chimera|fennec|maemo\sbrowser|minimo|conkeror)[\/\s]?([\w\.\+]+)",
        Group(1),
        V(2),
    ),
    (
        r"(firefox|seamonkey|k-meleon|icecat|iceape|firebird|phoenix)\/([\w\.-]+)",
        Group(1),
        V(2),
    ),
    (r"(mozilla)\/([\w\.]+).+rv\:.+gecko\/\d+", Group(1), V(2)),
    // Other
    (
        r"(polaris|lynx|dillo|icab|doris|amaya|w3m|netsurf|sleipnir)[\/\s]?([\w\.]+)",
        Group(1),
        V(2),
    ),
    (r"(links)\s\(([\w\.]+)", Group(1), V(2)),
    (r"(gobrowser)\/?([\w\.]+)*", Group(1), V(2)),
    (r"(ice\s?browser)\/v?([\w\._]+)", Group(1), V(2)),
    (r"(mosaic)[\/\s]([\w\.]+)", Group(1), V(2)),
];

pub const OPERATING_SYSTEMS: &[OsRule] = &[
    // Windows based
    (r"microsoft\s(windows)\s(vista|xp)", Group(1)),
    (r"(windows)\snt\s6\.2;\s(arm)", Windows(1)),
    (
        r"(windows\sphone(?:\sos)*|windows\smobile|windows)[\s\/]?([ntce\d\.\s]+\w)",
        Windows(1),
    ),
    // Rewritten: `(win(?=3|9|n)|win\s9x\s)([nt\d\.]+)`.
    (r"win[39n]|win\s9x\s[nt\d\.]", Fixed("Windows")),
    // Mobile/Embedded OS
    (r"\((bb)(10);", Fixed("BlackBerry")),
    (r"(blackberry)\w*\/?([\w\.]+)*", Group(1)),
    (r"(tizen)[\/\s]([\w\.]+)", Group(1)),
    (
        r"(android|webos|palm\sos|qnx|bada|rim\stablet\sos|meego|contiki)[\/\s-]?([\w\.]+)*",
        Group(1),
    ),
    (r"linux;.+(sailfish);", Group(1)),
    // Rewritten: `(symbian\s?o?s?|symbos|s60(?=;))[\/\s-]?([\w\.]+)*`.
    (r"symbian|symbos|s60;", Fixed("Symbian")),
    (r"\((series40);", Group(1)),
    (r"mozilla.+\(mobile;.+gecko.+firefox", Fixed("Firefox OS")),
    // Console, then GNU/Linux based: all named "Linux" by the fork.
    (
        r"(nintendo|playstation)\s([wids34portablevu]+)",
        Fixed("Linux"),
    ),
    (r"(mint)[\/\s\(]?(\w+)*", Fixed("Linux")),
    (r"(mageia|vectorlinux)[;\s]", Fixed("Linux")),
    // Rewritten: the fork's alternative `(?=\s)arch` can never match, and is left out.
    (
        r"(joli|[kxln]?ubuntu|debian|[open]*suse|gentoo|slackware|fedora|mandriva|centos|pclinuxos|redhat|zenwalk|linpus)[\/\s-]?([\w\.-]+)*",
        Fixed("Linux"),
    ),
    (r"(hurd|linux)\s?([\w\.]+)*", Fixed("Linux")),
    (r"(gnu)\s?([\w\.]+)*", Fixed("Linux")),
    (r"(cros)\s[\w]+\s([\w\.]+\w)", Fixed("Chromium OS")),
    (r"(sunos)\s?([\w\.]+\d)*", Fixed("Solaris")),
    (
        r"\s([frentopc-]{0,4}bsd|dragonfly)\s?([\w\.]+)*",
        Fixed("Linux"),
    ),
    (
        r"(iphone)(?:.*os\s*([\w]+)*\slike\smac|;\sopera)",
        Fixed("iPhone"),
    ),
    (
        r"(ipad)(?:.*os\s*([\w]+)*\slike\smac|;\sopera)",
        Fixed("iPad"),
    ),
    (
        r"(ip[honead]+)(?:.*os\s([\w]+)*\slike\smac|;\sopera)",
        Fixed("iOS"),
    ),
    (r"(mac\sos\sx)\s?([\w\s\.]+\w)*", Fixed("Mac")),
    // Rewritten: `(macintosh|mac(?=_powerpc)\s)`, whose second alternative can never match.
    (r"macintosh", Fixed("Mac")),
    // Other
    (r"((?:open)?solaris)[\/\s-]?([\w\.]+)*", Group(1)),
    (r"(haiku)\s(\w+)", Group(1)),
    // Rewritten: `(aix)\s((\d)(?=\.|\)|\s)[\w\.]*)*`, whose second group is optional.
    (r"(aix)\s", Group(1)),
    (
        r"(plan\s9|minix|beos|os\/2|amigaos|morphos|risc\sos|openvms)",
        Group(1),
    ),
    (r"(unix)\s?([\w\.]+)*", Group(1)),
];

/// The fork's map of Safari-before-3.0 WebKit builds to versions, in its order: the first whose
/// text the build contains (ignoring case) gives the version; `None` (the fork's `?`) gives no
/// version; a build that contains none keeps its own text.
pub const OLD_SAFARI: &[(Option<&str>, &str)] = &[
    (Some("1.0"), "/8"),
    (Some("1.2"), "/1"),
    (Some("1.3"), "/3"),
    (Some("2.0"), "/412"),
    (Some("2.0.2"), "/416"),
    (Some("2.0.3"), "/417"),
    (Some("2.0.4"), "/419"),
    (None, "/"),
];
