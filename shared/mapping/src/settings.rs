//! Destination settings (mapping spec §1): Segment's own settings keys, validated once.
//!
//! The 37 rows of the seed's Settings table are all accepted. The 20 that act in cloud mode are
//! typed fields of [`Settings`]; the 17 device-mode-only ones are accepted with any value and
//! ignored (their type cannot matter when they have no effect). Keys that are not Segment keys
//! at all are ignored too, so a full export of a destination's settings loads as it is.
//!
//! The two credentials among Segment's keys, `apiKey` and `secretKey`, are not kept here: they
//! travel with the delivery, not the plan (the functions read them from Secrets Manager, the
//! `map` command from its settings file), so no mapped object can leak them.

use serde_json::{Map, Value};

/// A configuration error: nothing is sent, and the message names the settings key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: `{0}` is required")]
    Missing(&'static str),
    #[error("settings: `{key}` must be {expected}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    #[error(
        "settings: `endpoint` has the unknown value {0:?} (expected \"\", \"standard\", \"north_america\", \"us\", \"europe\" or \"eu\")"
    )]
    UnknownEndpoint(String),
    #[error("settings: the settings must be a JSON object")]
    NotAnObject,
    #[error("settings: not valid JSON ({0})")]
    NotJson(String),
}

/// Amplitude data region (§2.1). Serialises as `standard` or `eu` (delivery jobs carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    #[default]
    Standard,
    Eu,
}

/// Where a `mapQueryParams` entry writes the page's query string (§4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryParamTarget {
    UserProperties,
    EventProperties,
}

/// The validated destination settings. Built once; the mapping never looks at raw JSON settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub region: Region,
    pub group_type_trait: Option<String>,
    pub group_value_trait: Option<String>,
    pub map_query_params: Vec<(String, QueryParamTarget)>,
    pub prefer_anonymous_id_for_device_id: bool,
    pub send_alias: bool,
    pub send_to_batch_endpoint: bool,
    pub track_all_pages: bool,
    pub track_categorized_pages: bool,
    pub track_named_pages: bool,
    pub track_products_once: bool,
    pub track_revenue_per_product: bool,
    /// Opt-in (spec §16.2): Segment exports always carry the key, so the default only matters
    /// for hand-written settings files.
    pub track_utm_properties: bool,
    pub traits_to_append: Vec<String>,
    pub traits_to_increment: Vec<String>,
    pub traits_to_prepend: Vec<String>,
    pub traits_to_set_once: Vec<String>,
    pub use_custom_amplitude_properties: bool,
    /// `idempotentTraitOperations` (not a Segment key; default `true`, spec §8.1.4): identifies
    /// whose user properties use `$add`, `$append` or `$prepend` go as `$identify` events with
    /// an `insert_id`, so a resend is never applied twice. `false` keeps the classic `/identify`.
    pub idempotent_trait_operations: bool,

    // The opt-in rules of spec §17: keys of this project, not Segment's, in the same JSON.
    /// `unsetNullTraits` (§17.1.2): a trait whose value is `null` removes the user property.
    pub unset_null_traits: bool,
    /// `traitOperationsOnEvents` (§17.2): the trait lists apply to events' `context.traits`.
    pub trait_operations_on_events: bool,
    /// `pageEventNameTemplate` (§17.3): pages sent once, named by this template.
    pub page_event_name_template: Option<String>,
    /// `screenEventNameTemplate` (§17.3): screens sent once, named by this template.
    pub screen_event_name_template: Option<String>,
    /// `sendReferrer` (§17.4.1): the page's referrer and its domain as user properties.
    pub send_referrer: bool,
    /// `includeRawUserAgent` (§17.4.2): events carry `user_agent` as sent.
    pub include_raw_user_agent: bool,
    /// `libraryFromContext` (§17.4.4): events carry `context.library.name` as `library`.
    pub library_from_context: bool,
    /// `minIdLength` (§17.5, 1–100): Amplitude's minimum id length, sent as
    /// `options.min_id_length`; shorter ids are dropped before sending. `None`: Amplitude's
    /// default, 5, and nothing sent.
    pub min_id_length: Option<u32>,

    // Server-side sessions (spec §18), this project's keys too.
    /// `sessionize`: track, page and screen events without a session id get one, synthesised
    /// from their times by the `sessions` stage.
    pub sessionize: bool,
    /// `sessionTimeoutMinutes` (1–1440, 30): the gap after which a new session starts.
    pub session_timeout_minutes: u32,
}

/// The Amplitude SDKs' session timeout, the default of `sessionTimeoutMinutes` (§18.1).
pub const DEFAULT_SESSION_TIMEOUT_MINUTES: u32 = 30;

/// Amplitude's minimum length of `user_id` and `device_id` when no `min_id_length` is sent.
pub const AMPLITUDE_MIN_ID_LENGTH: u32 = 5;

impl Settings {
    /// The minimum id length in effect: `minIdLength`, or Amplitude's default.
    pub fn effective_min_id_length(&self) -> u32 {
        self.min_id_length.unwrap_or(AMPLITUDE_MIN_ID_LENGTH)
    }
}

/// Settings rows that only change device-mode SDK behaviour (§1.2, "Cloud = no").
pub const DEVICE_MODE_ONLY_KEYS: [&str; 17] = [
    "appendFieldsToEventProps",
    "batchEvents",
    "deviceIdFromUrlParam",
    "enableLocationListening",
    "eventUploadPeriodMillis",
    "eventUploadThreshold",
    "forceHttps",
    "saveParamsReferrerOncePerSession",
    "trackAllPagesV2",
    "trackGclid",
    "trackReferrer",
    "trackSessionEvents",
    "unsetParamsReferrerOnNewSession",
    "useAdvertisingIdForDeviceId",
    "useAmplitudeReferral",
    "useLogRevenueV2",
    "versionName",
];

impl Settings {
    /// Parses Segment's settings JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, SettingsError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| SettingsError::NotJson(e.to_string()))?;
        Self::from_json(&value)
    }

    /// Validates Segment's settings object. `null` values count as absent.
    pub fn from_json(value: &Value) -> Result<Self, SettingsError> {
        let map = value.as_object().ok_or(SettingsError::NotAnObject)?;
        let r = Reader(map);
        let region = match r.string("endpoint")? {
            None => Region::Standard,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "standard" | "north_america" | "us" => Region::Standard,
                "europe" | "eu" => Region::Eu,
                _ => return Err(SettingsError::UnknownEndpoint(v)),
            },
        };
        Ok(Settings {
            region,
            group_type_trait: r.string("groupTypeTrait")?.filter(|s| !s.is_empty()),
            group_value_trait: r.string("groupValueTrait")?.filter(|s| !s.is_empty()),
            map_query_params: r.query_params("mapQueryParams")?,
            prefer_anonymous_id_for_device_id: r.bool("preferAnonymousIdForDeviceId")?,
            send_alias: r.bool_aliased("sendAlias", "enableAlias")?,
            send_to_batch_endpoint: r.bool("sendToBatchEndpoint")?,
            track_all_pages: r.bool("trackAllPages")?,
            track_categorized_pages: r.bool("trackCategorizedPages")?,
            track_named_pages: r.bool("trackNamedPages")?,
            track_products_once: r.bool("trackProductsOnce")?,
            track_revenue_per_product: r.bool("trackRevenuePerProduct")?,
            track_utm_properties: r.bool("trackUtmProperties")?,
            traits_to_append: r.trait_list("traitsToAppend")?,
            traits_to_increment: r.trait_list("traitsToIncrement")?,
            traits_to_prepend: r.trait_list("traitsToPrepend")?,
            traits_to_set_once: r.trait_list("traitsToSetOnce")?,
            use_custom_amplitude_properties: r.bool_aliased(
                "useCustomAmplitudeProperties",
                "sendCustomLanguageAndCountry",
            )?,
            idempotent_trait_operations: r.bool_or("idempotentTraitOperations", true)?,
            unset_null_traits: r.bool("unsetNullTraits")?,
            trait_operations_on_events: r.bool("traitOperationsOnEvents")?,
            page_event_name_template: r
                .string("pageEventNameTemplate")?
                .filter(|t| !t.trim().is_empty()),
            screen_event_name_template: r
                .string("screenEventNameTemplate")?
                .filter(|t| !t.trim().is_empty()),
            send_referrer: r.bool("sendReferrer")?,
            include_raw_user_agent: r.bool("includeRawUserAgent")?,
            library_from_context: r.bool("libraryFromContext")?,
            min_id_length: r.integer_in("minIdLength", 1..=100, "an integer from 1 to 100")?,
            sessionize: r.bool("sessionize")?,
            session_timeout_minutes: r
                .integer_in(
                    "sessionTimeoutMinutes",
                    1..=1440,
                    "an integer from 1 to 1440",
                )?
                .unwrap_or(DEFAULT_SESSION_TIMEOUT_MINUTES),
        })
    }
}

impl Default for Settings {
    /// Every setting at its default.
    fn default() -> Self {
        Self::from_json(&Value::Object(Map::new())).expect("no settings is valid settings")
    }
}

struct Reader<'a>(&'a Map<String, Value>);

impl Reader<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, SettingsError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(SettingsError::WrongType {
                key,
                expected: "a string",
            }),
        }
    }

    fn bool(&self, key: &'static str) -> Result<bool, SettingsError> {
        self.bool_or(key, false)
    }

    fn bool_or(&self, key: &'static str, default: bool) -> Result<bool, SettingsError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(SettingsError::WrongType {
                key,
                expected: "true or false",
            }),
        }
    }

    /// A whole number within `range`.
    fn integer_in(
        &self,
        key: &'static str,
        range: std::ops::RangeInclusive<u32>,
        expected: &'static str,
    ) -> Result<Option<u32>, SettingsError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or(SettingsError::WrongType { key, expected })
    }

    /// The canonical key wins over its display-name alias (§1.1).
    fn bool_aliased(&self, key: &'static str, alias: &'static str) -> Result<bool, SettingsError> {
        if self.get(key).is_some() {
            self.bool(key)
        } else {
            self.bool(alias)
        }
    }

    /// A JSON array of names; elements may also be `{"traits": "<name>"}`; empty names ignored.
    fn trait_list(&self, key: &'static str) -> Result<Vec<String>, SettingsError> {
        let wrong = SettingsError::WrongType {
            key,
            expected: "an array of trait names",
        };
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let items = value.as_array().ok_or(wrong.clone())?;
        let mut names = Vec::with_capacity(items.len());
        for item in items {
            let name = match item {
                Value::String(s) => s.as_str(),
                Value::Object(o) => o
                    .get("traits")
                    .and_then(Value::as_str)
                    .ok_or(wrong.clone())?,
                _ => return Err(wrong),
            };
            if !name.is_empty() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// `{prop: "user_properties" | "event_properties"}`; any target other than exactly
    /// `event_properties` means `user_properties` (§4.4.1).
    fn query_params(
        &self,
        key: &'static str,
    ) -> Result<Vec<(String, QueryParamTarget)>, SettingsError> {
        let wrong = SettingsError::WrongType {
            key,
            expected: "an object of property name to \"user_properties\" or \"event_properties\"",
        };
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let map = value.as_object().ok_or(wrong.clone())?;
        map.iter()
            .map(|(name, target)| {
                let target = match target.as_str().ok_or(wrong.clone())? {
                    "event_properties" => QueryParamTarget::EventProperties,
                    _ => QueryParamTarget::UserProperties,
                };
                Ok((name.clone(), target))
            })
            .collect()
    }
}
