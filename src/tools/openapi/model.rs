//! The serde model of the parts of an OpenAPI 3.0/3.1 document that decide access, read from
//! YAML (merge keys applied first) or JSON; fields a document, path item or operation does not
//! define are refused.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::OpenApiError;

/// The operation keys of an OpenAPI 3.0/3.1 path item, and the methods they stand for.
const OPERATIONS: [(&str, &str); 8] = [
    ("get", "GET"),
    ("put", "PUT"),
    ("post", "POST"),
    ("delete", "DELETE"),
    ("options", "OPTIONS"),
    ("head", "HEAD"),
    ("patch", "PATCH"),
    ("trace", "TRACE"),
];

/// The other fixed fields of a path item; none changes who may call an operation (`servers` is
/// read separately, as it changes the path).
const OTHER_PATH_ITEM_FIELDS: [&str; 3] = ["summary", "description", "parameters"];

/// The fixed fields of an OpenAPI 3.0/3.1 document that [`Document`] does not read; none
/// changes who may call an operation.
const OTHER_DOCUMENT_FIELDS: [&str; 4] = ["jsonSchemaDialect", "webhooks", "tags", "externalDocs"];

/// The fixed fields of an operation that [`Operation`] does not read; none changes who may call
/// it.
const OTHER_OPERATION_FIELDS: [&str; 8] = [
    "tags",
    "description",
    "externalDocs",
    "parameters",
    "requestBody",
    "responses",
    "callbacks",
    "deprecated",
];

/// A string field that some documents write as a YAML number or boolean (`version: 1.0`,
/// `openapi: 3.1`); read as text either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Text(pub(super) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                // `{:?}` keeps the `.0` of `3.0`.
                Ok(Text(format!("{v:?}")))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A map in document order (rules keep the order of `paths`), refusing duplicate keys.
#[derive(Debug)]
pub(super) struct OrderedMap<V>(pub(super) Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = HashSet::new();
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// The parts of an OpenAPI 3.0 or 3.1 document that decide who may call what. Everything else
/// (schemas, responses, 3.1's `webhooks` and `jsonSchemaDialect`, ...) is ignored.
#[derive(Debug, Deserialize)]
pub struct Document {
    pub(super) openapi: Option<Text>,
    #[serde(default)]
    pub(super) info: Info,
    #[serde(default)]
    pub(super) servers: Vec<Server>,
    #[serde(default)]
    pub(super) paths: OrderedMap<PathItem>,
    pub(super) security: Option<Vec<SecurityRequirement>>,
    #[serde(default)]
    pub(super) components: Components,
    /// Every other field, checked against [`OTHER_DOCUMENT_FIELDS`] by [`Document::parse`].
    #[serde(flatten)]
    pub(super) other: OrderedMap<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Info {
    pub(super) title: Option<Text>,
    pub(super) version: Option<Text>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Server {
    pub(super) url: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Components {
    #[serde(default, rename = "securitySchemes")]
    pub(super) security_schemes: OrderedMap<SecurityScheme>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SecurityScheme {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
}

/// Scheme name → scopes; all of its schemes at once (AND).
pub(super) type SecurityRequirement = OrderedMap<Vec<String>>;

/// A path item: its operations in the order written, and what else could change a rule.
#[derive(Debug, Default)]
pub(super) struct PathItem {
    pub(super) reference: Option<String>,
    pub(super) servers: Vec<Server>,
    pub(super) operations: Vec<(&'static str, Operation)>,
    pub(super) unknown_fields: Vec<String>,
}

impl<'de> Deserialize<'de> for PathItem {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = PathItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path item (a map)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PathItem, A::Error> {
                let mut item = PathItem::default();
                while let Some(key) = map.next_key::<String>()? {
                    if let Some((_, method)) = OPERATIONS.iter().find(|(k, _)| *k == key) {
                        item.operations.push((method, map.next_value()?));
                    } else if key == "$ref" {
                        item.reference = Some(map.next_value()?);
                    } else if key == "servers" {
                        item.servers = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        if !key.starts_with("x-") && !OTHER_PATH_ITEM_FIELDS.contains(&&*key) {
                            item.unknown_fields.push(key);
                        }
                    }
                }
                Ok(item)
            }
        }
        deserializer.deserialize_map(ItemVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Operation {
    pub(super) operation_id: Option<Text>,
    pub(super) summary: Option<Text>,
    pub(super) security: Option<Vec<SecurityRequirement>>,
    #[serde(default)]
    pub(super) servers: Vec<Server>,
    /// Every other field, checked against [`OTHER_OPERATION_FIELDS`] by [`Document::parse`].
    #[serde(flatten)]
    pub(super) other: OrderedMap<IgnoredAny>,
}

/// Whether `field`, not read by its object, is one that may be ignored: a fixed field of `known`
/// or an extension (`x-...`).
fn ignorable(field: &str, known: &[&str]) -> bool {
    field.starts_with("x-") || known.contains(&field)
}

/// Whether a YAML merge key (`<<`) is left anywhere in `value`.
fn has_merge_key(value: &serde_yaml_ng::Value) -> bool {
    use serde_yaml_ng::Value;
    match value {
        Value::Mapping(map) => map
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_key(v)),
        Value::Sequence(items) => items.iter().any(has_merge_key),
        Value::Tagged(tagged) => has_merge_key(&tagged.value),
        _ => false,
    }
}

impl Document {
    /// Reads a document from YAML, or from JSON when its first character (after white space)
    /// is `{`, and checks that it is OpenAPI 3.0 or 3.1. YAML merge keys (`<<: *anchor`) are
    /// applied first, as YAML 1.1 readers apply them, so an operation taking its `security`
    /// from an anchor keeps it. Fields the document or an operation does not define are
    /// refused (extensions `x-...` excepted): ignored, a misspelt `security` would leave the
    /// weaker requirement in force.
    pub fn parse(text: &str) -> Result<Document, OpenApiError> {
        let doc: Document = if text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{')
        {
            serde_json::from_str(text.trim_start_matches('\u{feff}'))?
        } else {
            let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
            // A merged mapping may hold a merge key of its own, which one pass puts back in
            // place; each pass resolves one level of such chains, and anchors cannot nest
            // without end.
            while has_merge_key(&value) {
                value.apply_merge()?;
            }
            serde_yaml_ng::from_value(value)?
        };
        let Some(Text(version)) = &doc.openapi else {
            return Err(OpenApiError::NoVersion);
        };
        let mut parts = version.split('.');
        if !(parts.next() == Some("3") && matches!(parts.next(), Some("0" | "1"))) {
            return Err(OpenApiError::Version(version.clone()));
        }
        if let Some((field, _)) = doc
            .other
            .0
            .iter()
            .find(|(field, _)| !ignorable(field, &OTHER_DOCUMENT_FIELDS))
        {
            return Err(OpenApiError::UnknownDocumentField(field.clone()));
        }
        for (path, item) in &doc.paths.0 {
            for (method, op) in &item.operations {
                if let Some((field, _)) = op
                    .other
                    .0
                    .iter()
                    .find(|(field, _)| !ignorable(field, &OTHER_OPERATION_FIELDS))
                {
                    return Err(OpenApiError::UnknownOperationField {
                        operation: format!("{method} {path}"),
                        field: field.clone(),
                    });
                }
            }
        }
        Ok(doc)
    }
}
