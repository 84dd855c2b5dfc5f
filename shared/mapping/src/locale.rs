//! `context.locale` → Amplitude `language` and a fallback `country` (spec §3.10).

use serde_json_borrow::Value;

use crate::json;

/// The names the classic integration used (`locale-string` 1.1.0, which reads them from the npm
/// packages `langs` 1.x and `country-list` 0.0.3), generated from those packages.
///
/// Decision: these, not the ISO lists of today. Where the two differ, Amplitude charts kept
/// the classic spelling for years: `el` is "Greek" (not "Modern Greek"), `sl` "Slovene", `NL`
/// "Netherlands" (not "Netherlands (Kingdom of the)"), `KR` "Korea, Republic of", `CZ` "Czech
/// Republic". The packages' own slips come with them: Divehi is listed as `iv` (not `dv`),
/// `sh` (Serbo-Croatian) is missing, and `HM` is "Heard Island and McDonald Mcdonald Islands".
mod names;

/// The English names a locale such as `en-US` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocaleNames {
    pub language: &'static str,
    pub country: Option<&'static str>,
}

/// Reads `context.locale` (a string, or an object with a `language` string), e.g. `en-US`,
/// `en_us` or `{"language": "en-us"}`. Codes compare case-insensitively. When either code is
/// unknown there is no result at all, as in the classic integration.
pub fn names(locale: &Value<'_>) -> Option<LocaleNames> {
    let tag = match locale {
        Value::Str(s) => s.as_ref(),
        Value::Object(_) => json::get(locale, "language").as_str()?,
        _ => return None,
    };
    let mut parts = tag.split(['-', '_']);
    let lang = parts.next()?.to_ascii_lowercase();
    if lang.len() != 2 {
        return None;
    }
    let language = name_of(&names::LANGUAGES, &lang)?;
    let country = match parts.next() {
        None => None,
        Some(code) => Some(country_name(&code.to_ascii_uppercase())?),
    };
    Some(LocaleNames { language, country })
}

/// The English name of an alpha-2 country code (upper case).
fn country_name(code: &str) -> Option<&'static str> {
    name_of(&names::COUNTRIES, code)
}

/// The name of `code` in a table sorted by code.
fn name_of(table: &[(&str, &'static str)], code: &str) -> Option<&'static str> {
    let at = table.binary_search_by(|(c, _)| (*c).cmp(code)).ok()?;
    table.get(at).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<LocaleNames> {
        names(&serde_json::from_str::<Value>(s).unwrap())
    }

    #[test]
    fn spec_3_10_language_and_country_names() {
        let en_us = Some(LocaleNames {
            language: "English",
            country: Some("United States"),
        });
        assert_eq!(parse(r#""en-US""#), en_us);
        assert_eq!(parse(r#""en_us""#), en_us);
        assert_eq!(parse(r#"{"language": "en-us"}"#), en_us);
        assert_eq!(
            parse(r#""de-DE-x-foo""#),
            Some(LocaleNames {
                language: "German",
                country: Some("Germany")
            })
        );
        assert_eq!(
            parse(r#""fr""#),
            Some(LocaleNames {
                language: "French",
                country: None
            })
        );
    }

    #[test]
    fn spec_3_10_unknown_codes_give_no_result() {
        assert_eq!(parse(r#""xx-US""#), None);
        assert_eq!(parse(r#""en-ZZ""#), None);
        assert_eq!(parse(r#""english""#), None);
        assert_eq!(parse("42"), None);
    }

    /// §3.10.4: the classic libraries' names, where today's ISO lists differ, and their slips.
    #[test]
    fn spec_3_10_4_names_are_the_classic_libraries() {
        let names = |s: &str| parse(s).map(|n| (n.language, n.country));
        assert_eq!(names(r#""el-GR""#), Some(("Greek", Some("Greece"))));
        assert_eq!(names(r#""sl-SI""#), Some(("Slovene", Some("Slovenia"))));
        assert_eq!(names(r#""nl-NL""#), Some(("Dutch", Some("Netherlands"))));
        assert_eq!(
            names(r#""ko-KR""#),
            Some(("Korean", Some("Korea, Republic of")))
        );
        assert_eq!(names(r#""cs-CZ""#), Some(("Czech", Some("Czech Republic"))));
        assert_eq!(
            names(r#""en-GB""#),
            Some(("English", Some("United Kingdom")))
        );
        assert_eq!(names(r#""iv""#), Some(("Divehi", None)));
        assert_eq!(names(r#""dv""#), None);
        assert_eq!(names(r#""sh""#), None);
    }

    /// The tables are searched by halves: each sorted by code, every code two letters of the
    /// case the lookup uses, as many as the packages list.
    #[test]
    fn the_name_tables_are_sorted_by_code() {
        let check = |table: &[(&str, &str)], upper: bool| {
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(table.iter().all(|(c, n)| {
                c.len() == 2
                    && c.bytes()
                        .all(|b| b.is_ascii_alphabetic() && b.is_ascii_uppercase() == upper)
                    && !n.is_empty()
            }));
        };
        check(&names::LANGUAGES, false);
        check(&names::COUNTRIES, true);
        assert_eq!((names::LANGUAGES.len(), names::COUNTRIES.len()), (184, 249));
    }
}
