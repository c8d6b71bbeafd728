//! Bounded XML reading (XML 1.0 §2.8 and §4, Namespaces in XML 1.0 §3–§6).
//!
//! Every document this crate reads goes through [`Doc::parse`] first: one streaming pass that
//! refuses DOCTYPEs (and so entity declarations, external entities and entity expansion),
//! processing instructions other than the leading XML declaration, non-UTF-8 encodings,
//! unbound namespace prefixes and nesting deeper than [`MAX_DEPTH`], and that stops at the
//! size limit. Only a document that passed it is ever handed to libxml2/libxmlsec1, which
//! have crashed on pathological input. The result is a small read-only element tree; values
//! are read from a tree built from *verified* bytes only (see `response.rs`).

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use crate::error::{SamlError, SamlErrorCode, clip};

/// Deepest element nesting accepted. A SAML Response with an encrypted, signed assertion and
/// its attribute values nests about 10 deep; metadata about 8.
pub const MAX_DEPTH: usize = 32;

/// Most attributes (namespace declarations included) on one element. SAML elements carry fewer
/// than a dozen; the cap keeps duplicate-attribute checks, which are quadratic, cheap.
pub(crate) const MAX_ATTRIBUTES: usize = 128;

pub(crate) const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub ns: String,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Child {
    Elem(usize),
    Text(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<Attr>,
    /// The element's own `xmlns` / `xmlns:p` declarations (prefix `""` is the default namespace).
    pub decls: Vec<(String, String)>,
    pub children: Vec<Child>,
    pub parent: Option<usize>,
}

/// A parsed document; element 0 is the root.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    elems: Vec<Elem>,
}

/// A borrowed element of a [`Doc`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct El<'d> {
    doc: &'d Doc,
    idx: usize,
}

impl Doc {
    /// Parses `xml` within `max_bytes` and [`MAX_DEPTH`], refusing what must never reach libxml2.
    pub fn parse(xml: &str, max_bytes: usize) -> Result<Doc, SamlError> {
        if xml.len() > max_bytes {
            return Err(SamlError::new(
                SamlErrorCode::TooLarge,
                format!(
                    "document of {} bytes exceeds the limit of {max_bytes}",
                    xml.len()
                ),
            ));
        }
        let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
        let mut reader = quick_xml::Reader::from_str(xml);
        {
            let config = reader.config_mut();
            config.check_end_names = true;
            config.check_comments = true;
            config.expand_empty_elements = false;
        }
        let mut b = Builder::default();
        let mut first = true;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| SamlError::malformed(format!("XML is not well-formed: {e}")))?;
            let at_start = std::mem::replace(&mut first, false);
            match event {
                Event::Decl(d) => {
                    if !at_start {
                        return Err(SamlError::new(
                            SamlErrorCode::ProcessingInstructionRefused,
                            "XML declaration after the start of the document",
                        ));
                    }
                    check_decl(&d)?;
                }
                Event::DocType(_) => {
                    return Err(SamlError::new(
                        SamlErrorCode::DoctypeRefused,
                        "DOCTYPE declarations are refused",
                    ));
                }
                Event::PI(pi) => {
                    return Err(SamlError::new(
                        SamlErrorCode::ProcessingInstructionRefused,
                        format!("processing instruction <?{}?> refused", clip(pi.target())),
                    ));
                }
                Event::Start(s) => b.open(&s, false)?,
                Event::Empty(s) => b.open(&s, true)?,
                Event::End(_) => b.close(),
                Event::Text(t) => b.text(&t.xml10_content())?,
                Event::CData(c) => b.text(&c.xml10_content())?,
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => {
                            let name = r.xml10_content();
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(s) => s.to_owned(),
                                None => {
                                    return Err(SamlError::new(
                                        SamlErrorCode::DoctypeRefused,
                                        format!("entity reference &{};", clip(&name)),
                                    ));
                                }
                            }
                        }
                        Err(e) => {
                            return Err(SamlError::malformed(format!(
                                "bad character reference: {e}"
                            )));
                        }
                    };
                    b.text(&resolved)?;
                }
                // Comments are not character data: text on either side of one joins up.
                Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        b.finish()
    }

    pub fn root(&self) -> El<'_> {
        El { doc: self, idx: 0 }
    }
}

fn check_decl(d: &quick_xml::events::BytesDecl<'_>) -> Result<(), SamlError> {
    let version = d
        .version()
        .map_err(|e| SamlError::malformed(format!("XML declaration: {e}")))?;
    if version.as_ref() != "1.0" {
        return Err(SamlError::malformed("only XML 1.0 is accepted"));
    }
    // A declared encoding other than UTF-8 would make libxml2 read different characters
    // from the same bytes than this pass did.
    if let Some(enc) = d.encoding() {
        let enc = enc.map_err(|e| SamlError::malformed(format!("XML declaration: {e}")))?;
        if !enc.eq_ignore_ascii_case("utf-8") {
            return Err(SamlError::malformed(format!(
                "encoding {} refused; only UTF-8 is accepted",
                clip(&enc)
            )));
        }
    }
    Ok(())
}

#[derive(Default)]
struct Builder {
    elems: Vec<Elem>,
    /// Open elements, innermost last.
    stack: Vec<usize>,
    /// In-scope namespace bindings, innermost last; `scope_marks[i]` is the length of
    /// `bindings` before element `stack[i]` added its own.
    bindings: Vec<(String, String)>,
    scope_marks: Vec<usize>,
    root_closed: bool,
}

impl Builder {
    fn resolve(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(NS_XML);
        }
        self.bindings
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, uri)| uri.as_str())
    }

    fn open(&mut self, s: &BytesStart<'_>, empty: bool) -> Result<(), SamlError> {
        if self.root_closed {
            return Err(SamlError::malformed("content after the root element"));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(SamlError::new(
                SamlErrorCode::TooDeep,
                format!("elements nest deeper than {MAX_DEPTH}"),
            ));
        }
        let mark = self.bindings.len();
        let mut decls = Vec::new();
        let mut raw_attrs = Vec::new();
        for (n, attr) in s.attributes().enumerate() {
            if n >= MAX_ATTRIBUTES {
                return Err(SamlError::new(
                    SamlErrorCode::TooLarge,
                    format!("more than {MAX_ATTRIBUTES} attributes on one element"),
                ));
            }
            let attr = attr.map_err(|e| SamlError::malformed(format!("attribute: {e}")))?;
            let key = attr.key.as_ref().to_owned();
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| SamlError::malformed(format!("attribute value: {e}")))?
                .into_owned();
            if key == "xmlns" {
                decls.push((String::new(), value));
            } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                // Namespaces in XML 1.0 §3: no undeclaring, and `xml`/`xmlns` are reserved.
                if value.is_empty() || prefix == "xmlns" || (prefix == "xml") != (value == NS_XML) {
                    return Err(SamlError::malformed(format!(
                        "illegal namespace declaration xmlns:{}",
                        clip(prefix)
                    )));
                }
                decls.push((prefix.to_owned(), value));
            } else {
                raw_attrs.push((key, value));
            }
        }
        self.bindings.extend(decls.iter().cloned());
        let (prefix, local) = split_qname(s.name().into_inner())?;
        let ns = match prefix {
            Some(p) => self
                .resolve(p)
                .ok_or_else(|| SamlError::malformed(format!("unbound prefix {}", clip(p))))?,
            None => self.resolve("").unwrap_or(""),
        }
        .to_owned();
        let mut attrs: Vec<Attr> = Vec::with_capacity(raw_attrs.len());
        for (key, value) in raw_attrs {
            let (prefix, local) = split_qname(&key)?;
            // Unprefixed attributes are in no namespace (Namespaces in XML 1.0 §6.2).
            let ans = match prefix {
                Some(p) => self
                    .resolve(p)
                    .ok_or_else(|| SamlError::malformed(format!("unbound prefix {}", clip(p))))?
                    .to_owned(),
                None => String::new(),
            };
            if attrs.iter().any(|a| a.ns == ans && a.name == local) {
                return Err(SamlError::malformed(format!(
                    "duplicate attribute {}",
                    clip(local)
                )));
            }
            attrs.push(Attr {
                ns: ans,
                name: local.to_owned(),
                value,
            });
        }
        let idx = self.elems.len();
        let parent = self.stack.last().copied();
        if parent.is_none() && !self.elems.is_empty() {
            return Err(SamlError::malformed("more than one root element"));
        }
        self.elems.push(Elem {
            ns,
            name: local.to_owned(),
            attrs,
            decls,
            children: Vec::new(),
            parent,
        });
        if let Some(p) = parent {
            self.elems[p].children.push(Child::Elem(idx));
        }
        if empty {
            self.bindings.truncate(mark);
            if parent.is_none() {
                self.root_closed = true;
            }
        } else {
            self.stack.push(idx);
            self.scope_marks.push(mark);
        }
        Ok(())
    }

    fn close(&mut self) {
        // quick-xml has already matched the end tag against the open one.
        self.stack.pop();
        if let Some(mark) = self.scope_marks.pop() {
            self.bindings.truncate(mark);
        }
        if self.stack.is_empty() {
            self.root_closed = true;
        }
    }

    fn text(&mut self, text: &str) -> Result<(), SamlError> {
        match self.stack.last() {
            Some(&top) => {
                let children = &mut self.elems[top].children;
                if let Some(Child::Text(t)) = children.last_mut() {
                    t.push_str(text);
                } else {
                    children.push(Child::Text(text.to_owned()));
                }
                Ok(())
            }
            None if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => Ok(()),
            None => Err(SamlError::malformed("text outside the root element")),
        }
    }

    fn finish(self) -> Result<Doc, SamlError> {
        if self.elems.is_empty() {
            return Err(SamlError::malformed("no root element"));
        }
        if !self.stack.is_empty() {
            return Err(SamlError::malformed("unclosed element"));
        }
        Ok(Doc { elems: self.elems })
    }
}

fn split_qname(qname: &str) -> Result<(Option<&str>, &str), SamlError> {
    match qname.split_once(':') {
        None if !qname.is_empty() => Ok((None, qname)),
        Some((p, l)) if !p.is_empty() && !l.is_empty() && !l.contains(':') => Ok((Some(p), l)),
        _ => Err(SamlError::malformed(format!(
            "bad qualified name {}",
            clip(qname)
        ))),
    }
}

impl<'d> El<'d> {
    fn elem(&self) -> &'d Elem {
        &self.doc.elems[self.idx]
    }
    pub fn ns(&self) -> &'d str {
        &self.elem().ns
    }
    pub fn name(&self) -> &'d str {
        &self.elem().name
    }
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns() == ns && self.name() == name
    }
    pub fn same(&self, other: &El<'_>) -> bool {
        std::ptr::eq(self.doc, other.doc) && self.idx == other.idx
    }
    /// An attribute in no namespace (all SAML and XML-DSig attributes are unqualified).
    pub fn attr(&self, name: &str) -> Option<&'d str> {
        self.attr_ns("", name)
    }
    pub fn attr_ns(&self, ns: &str, name: &str) -> Option<&'d str> {
        self.elem()
            .attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }
    pub fn parent(&self) -> Option<El<'d>> {
        self.elem().parent.map(|idx| El { doc: self.doc, idx })
    }
    pub fn children(self) -> impl Iterator<Item = El<'d>> + use<'d> {
        let doc = self.doc;
        self.elem().children.iter().filter_map(move |c| match c {
            Child::Elem(idx) => Some(El { doc, idx: *idx }),
            Child::Text(_) => None,
        })
    }
    pub fn children_named(
        self,
        ns: &'d str,
        name: &'d str,
    ) -> impl Iterator<Item = El<'d>> + use<'d> {
        self.children().filter(move |c| c.is(ns, name))
    }
    pub fn child(self, ns: &'d str, name: &'d str) -> Option<El<'d>> {
        self.children_named(ns, name).next()
    }
    /// The only child with this name; `Err` names the element when there are several.
    pub fn single_child(self, ns: &'d str, name: &'d str) -> Result<Option<El<'d>>, SamlError> {
        let mut it = self.children_named(ns, name);
        let first = it.next();
        if it.next().is_some() {
            return Err(SamlError::malformed(format!(
                "more than one {name} in {}",
                self.name()
            )));
        }
        Ok(first)
    }
    /// Direct character data (text and CDATA; comments are not text), concatenated.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.elem().children {
            if let Child::Text(t) = c {
                out.push_str(t);
            }
        }
        out
    }
    /// All character data of the element and its descendants, in document order.
    pub fn deep_text(&self) -> String {
        let mut out = String::new();
        self.collect_text(&mut out);
        out
    }
    fn collect_text(&self, out: &mut String) {
        for c in &self.elem().children {
            match c {
                Child::Text(t) => out.push_str(t),
                Child::Elem(idx) => El {
                    doc: self.doc,
                    idx: *idx,
                }
                .collect_text(out),
            }
        }
    }
    /// This element and every element below it, in document order.
    pub fn descendants(&self) -> Vec<El<'d>> {
        let mut out = Vec::new();
        let mut stack = vec![*self];
        while let Some(e) = stack.pop() {
            out.push(e);
            let kids: Vec<El<'d>> = e.children().collect();
            stack.extend(kids.into_iter().rev());
        }
        out
    }
    /// Namespace bindings in scope at this element (innermost declaration of each prefix wins).
    pub fn in_scope_namespaces(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut cur = Some(*self);
        while let Some(e) = cur {
            for (p, uri) in &e.elem().decls {
                if !out.iter().any(|(q, _)| q == p) {
                    out.push((p.clone(), uri.clone()));
                }
            }
            cur = e.parent();
        }
        out
    }
}

/// Escapes text for use inside an XML attribute value or element content.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_doctype_pi_depth_and_unbound_prefixes() {
        let code = |x: &str| Doc::parse(x, 1 << 20).map(|_| ()).unwrap_err().code;
        assert_eq!(
            code("<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>"),
            SamlErrorCode::DoctypeRefused
        );
        assert_eq!(code("<a>&e;</a>"), SamlErrorCode::DoctypeRefused);
        assert_eq!(
            code("<a><?php x?></a>"),
            SamlErrorCode::ProcessingInstructionRefused
        );
        assert_eq!(code("<p:a/>"), SamlErrorCode::Malformed);
        assert_eq!(code("<a x='1' x='2'/>"), SamlErrorCode::Malformed);
        assert_eq!(code("<a/><b/>"), SamlErrorCode::Malformed);
        assert_eq!(
            code("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>"),
            SamlErrorCode::Malformed
        );
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        assert_eq!(code(&deep), SamlErrorCode::TooDeep);
        let wide: String = (0..40_000).map(|i| format!(" a{i}=\"\"")).collect();
        let started = std::time::Instant::now();
        assert_eq!(code(&format!("<a{wide}/>")), SamlErrorCode::TooLarge);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            Doc::parse("<a/>", 2).map(|_| ()).unwrap_err().code,
            SamlErrorCode::TooLarge
        );
    }

    #[test]
    fn resolves_namespaces_and_text() {
        let doc = Doc::parse(
            "<?xml version=\"1.0\"?><p:a xmlns:p=\"urn:p\" xmlns=\"urn:d\" p:x=\"1\" y=\"2\"><b>x&amp;<!---->y<![CDATA[<z>]]>&#65;</b></p:a>",
            1 << 20,
        )
        .unwrap();
        let root = doc.root();
        assert!(root.is("urn:p", "a"));
        assert_eq!(root.attr_ns("urn:p", "x"), Some("1"));
        assert_eq!(root.attr("y"), Some("2"));
        let b = root.child("urn:d", "b").unwrap();
        assert_eq!(b.text(), "x&y<z>A");
        assert_eq!(b.in_scope_namespaces().len(), 2);
    }
}
