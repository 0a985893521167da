//! Who and where, by name: what people read instead of ids.
//!
//! Ids (`lakeside`, `acme`, `EL-3`) are what devices, tokens and records
//! carry; a property engineer reads 湖畔花园 and 3号楼. The names live in
//! the configuration (`[[sites]]`, `[[alerting.buildings]]`, a contact's
//! `name`) and are gathered here once at start, so the API adds them to
//! what it answers (a device's `building`, the `sites` and `contractors`
//! groups of `/api/v1/labels`) without each handler reading the
//! configuration again. Pure: built from configuration, asked by id.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// `[[sites]]`: a compound's display names, and where it is.
///
/// ```toml
/// [[sites]]
/// id = "lakeside"
/// name = "湖畔花园"
/// name_en = "Lakeside Garden"
/// area = "urban"          # or "rural": the contract's 30 min on site in cities, 1 h elsewhere
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The site id devices publish under (`fm/v1/{site}/…`).
    pub id: String,
    /// Its name in Chinese, as residents and the bureau know it.
    pub name: String,
    /// Its name in English; the Chinese name when unset.
    #[serde(default)]
    pub name_en: Option<String>,
    /// In a city or elsewhere: the work-order policy gives a lift
    /// contractor 30 min to reach a trapped passenger in a city, 1 h
    /// elsewhere (Hubei's elevator rules, contract §4). Urban by default:
    /// the stricter figure, so a compound left unset is never given longer.
    #[serde(default)]
    pub area: dispatch::Area,
}

/// Each configured compound's area, for the work-order policy (which stays
/// pure and is handed them).
pub fn areas(sites: &[SiteConfig]) -> impl Iterator<Item = (String, dispatch::Area)> + '_ {
    sites.iter().map(|s| (s.id.clone(), s.area))
}

/// The names, by id.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// Site id → (Chinese, English).
    sites: BTreeMap<String, (String, String)>,
    /// (site, device) → building.
    buildings: HashMap<(String, String), String>,
    /// Contact id → its name.
    contractors: BTreeMap<String, String>,
}

impl Directory {
    /// Gathers the names of the configuration.
    #[must_use]
    pub fn new(
        sites: &[SiteConfig],
        buildings: &[alerting::config::BuildingConfig],
        contacts: &[notify::Contact],
    ) -> Directory {
        Directory {
            sites: sites
                .iter()
                .map(|s| {
                    let en = s.name_en.clone().unwrap_or_else(|| s.name.clone());
                    (s.id.clone(), (s.name.clone(), en))
                })
                .collect(),
            buildings: buildings
                .iter()
                .flat_map(|b| {
                    b.devices
                        .iter()
                        .map(|d| ((b.site.clone(), d.clone()), b.building.clone()))
                })
                .collect(),
            contractors: contacts
                .iter()
                .filter_map(|c| c.name.as_ref().map(|n| (c.id.clone(), n.clone())))
                .collect(),
        }
    }

    /// The building a device stands in, when configured.
    #[must_use]
    pub fn building(&self, site: &str, device: &str) -> Option<&str> {
        self.buildings
            .get(&(site.to_owned(), device.to_owned()))
            .map(String::as_str)
    }

    /// The `sites` and `contractors` groups of the labels, in their shape
    /// (`{id: {zh, en}}`), with only the sites `sees` admits: a token scoped
    /// to one compound does not learn the names of the others.
    #[must_use]
    pub fn labels(&self, sees: impl Fn(&str) -> bool) -> (Value, Value) {
        let sites: Map<String, Value> = self
            .sites
            .iter()
            .filter(|(id, _)| sees(id))
            .map(|(id, (zh, en))| (id.clone(), json!({ "zh": zh, "en": en })))
            .collect();
        let contractors: Map<String, Value> = self
            .contractors
            .iter()
            .map(|(id, name)| (id.clone(), json!({ "zh": name, "en": name })))
            .collect();
        (Value::Object(sites), Value::Object(contractors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: &str, name: Option<&str>) -> notify::Contact {
        notify::Contact {
            id: id.into(),
            name: name.map(str::to_owned),
            webhook: None,
            email: None,
            mqtt: true,
            wecom: None,
            dingtalk: None,
            sms: Vec::new(),
        }
    }

    #[test]
    fn names_are_found_by_id_and_scoped_by_site() {
        let sites = [
            SiteConfig {
                id: "lakeside".into(),
                name: "湖畔花园".into(),
                name_en: Some("Lakeside Garden".into()),
                area: dispatch::Area::Urban,
            },
            SiteConfig {
                id: "hill".into(),
                name: "山景苑".into(),
                name_en: None,
                area: dispatch::Area::Rural,
            },
        ];
        let buildings = [alerting::config::BuildingConfig {
            site: "lakeside".into(),
            building: "3号楼".into(),
            devices: vec!["EL-3".into(), "CH-1".into()],
        }];
        let contacts = [contact("acme", Some("武汉电梯维保")), contact("anon", None)];
        let d = Directory::new(&sites, &buildings, &contacts);
        assert_eq!(d.building("lakeside", "EL-3"), Some("3号楼"));
        assert_eq!(d.building("hill", "EL-3"), None, "a building belongs to its site");
        let (s, c) = d.labels(|_| true);
        assert_eq!(s["lakeside"], json!({"zh": "湖畔花园", "en": "Lakeside Garden"}));
        assert_eq!(s["hill"], json!({"zh": "山景苑", "en": "山景苑"}));
        assert_eq!(c, json!({"acme": {"zh": "武汉电梯维保", "en": "武汉电梯维保"}}));
        let (s, _) = d.labels(|site| site == "hill");
        assert_eq!(s.as_object().map(serde_json::Map::len), Some(1));
        assert!(s.get("lakeside").is_none());
        let areas: Vec<_> = areas(&sites).collect();
        assert_eq!(
            areas,
            [
                ("lakeside".to_owned(), dispatch::Area::Urban),
                ("hill".to_owned(), dispatch::Area::Rural)
            ]
        );
    }

    #[test]
    fn a_site_is_urban_unless_it_says_rural() {
        let parse = |t: &str| toml::from_str::<SiteConfig>(t);
        let s = parse("id = \"a\"\nname = \"甲\"").expect("valid");
        assert_eq!(s.area, dispatch::Area::Urban);
        let s = parse("id = \"a\"\nname = \"甲\"\narea = \"rural\"").expect("valid");
        assert_eq!(s.area, dispatch::Area::Rural);
        assert!(parse("id = \"a\"\nname = \"甲\"\narea = \"suburban\"").is_err());
    }
}
