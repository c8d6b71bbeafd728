//! From a verified assertion to the normalised profile (issue 5 §2 "Attribute mapping"),
//! with defaults for the claim names of Entra ID/ADFS, Okta, Keycloak and Shibboleth
//! (eduPerson / REFEDS OIDs).

use std::collections::BTreeMap;

use crate::ns;
use crate::response::Assertion;

/// Attribute names tried in order for each profile field; the first present, non-empty one
/// wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMapping {
    pub email: Vec<String>,
    pub first_name: Vec<String>,
    pub last_name: Vec<String>,
    /// All values of the first present attribute.
    pub groups: Vec<String>,
    /// The IdP's stable user identifier; the NameID when none of these is present.
    pub idp_id: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for AttributeMapping {
    fn default() -> Self {
        Self {
            email: names(&[
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
                "email",
                "mail",
                "urn:oid:0.9.2342.19200300.100.1.3",
                "emailAddress",
                "http://schemas.xmlsoap.org/claims/EmailAddress",
            ]),
            first_name: names(&[
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
                "firstName",
                "givenName",
                "given_name",
                "urn:oid:2.5.4.42",
            ]),
            last_name: names(&[
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
                "lastName",
                "sn",
                "surname",
                "family_name",
                "urn:oid:2.5.4.4",
            ]),
            groups: names(&[
                "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
                "http://schemas.xmlsoap.org/claims/Group",
                "groups",
                "memberOf",
                "Role",
                "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
                "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
            ]),
            idp_id: names(&[
                "http://schemas.microsoft.com/identity/claims/objectidentifier",
                "urn:oasis:names:tc:SAML:attribute:subject-id",
                "urn:oasis:names:tc:SAML:attribute:pairwise-id",
            ]),
        }
    }
}

/// The normalised profile of a SAML sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub groups: Vec<String>,
    pub idp_id: String,
    pub raw_attributes: BTreeMap<String, Vec<String>>,
}

fn first_values<'a>(a: &'a Assertion, names: &[String]) -> Option<Vec<&'a str>> {
    names.iter().find_map(|n| {
        let values: Vec<&str> = a
            .attributes
            .get(n)?
            .iter()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        (!values.is_empty()).then_some(values)
    })
}

fn first_value(a: &Assertion, names: &[String]) -> Option<String> {
    first_values(a, names).and_then(|v| v.first().map(|s| (*s).to_owned()))
}

/// Maps a verified assertion to a profile. An emailAddress-format NameID stands in for a
/// missing email attribute.
pub fn map_profile(a: &Assertion, m: &AttributeMapping) -> Profile {
    let email = first_value(a, &m.email).or_else(|| {
        (a.name_id_format.as_deref() == Some(ns::NAMEID_EMAIL)).then(|| a.name_id.trim().to_owned())
    });
    let mut groups: Vec<String> = Vec::new();
    for g in first_values(a, &m.groups).unwrap_or_default() {
        if !groups.iter().any(|x| x == g) {
            groups.push(g.to_owned());
        }
    }
    Profile {
        email,
        first_name: first_value(a, &m.first_name),
        last_name: first_value(a, &m.last_name),
        groups,
        idp_id: first_value(a, &m.idp_id).unwrap_or_else(|| a.name_id.clone()),
        raw_attributes: a.attributes.clone(),
    }
}
