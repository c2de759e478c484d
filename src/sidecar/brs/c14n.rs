//! XML that kim-cm writes for NSP, and exclusive XML canonicalization
//! (`http://www.w3.org/2001/10/xml-exc-c14n#`, without comments).
//!
//! SOSI signs the ID card with exclusive C14N, and the STS refuses anything
//! else ("Insufficient Digest Elements", lpr3-docs #61). Two halves, which
//! check each other in the tests and are both checked by `xmlsec1`:
//!
//! - [`El`] builds XML and writes it *in canonical form to begin with*: no
//!   XML declaration, a namespace declared on the element that first uses it
//!   visibly (and again after an element that did not render it), namespace
//!   declarations sorted by prefix, attributes without a namespace first and
//!   then by namespace URI and local name, start and end tags always (no
//!   `<a/>`), text and attribute values escaped as C14N escapes them. What
//!   kim-cm signs is therefore the very bytes it sends.
//! - [`exclusive`] canonicalizes a parsed subtree (roxmltree), for verifying
//!   signatures over XML someone else wrote (the simulator, the tests).
//!
//! Neither handles what kim-cm never writes or needs: comments are dropped,
//! processing instructions and an `InclusiveNamespaces` prefix list are not
//! supported.

use std::collections::BTreeMap;

/// An attribute: `prefix:name="value"` with the prefix's namespace, or a plain one.
#[derive(Debug, Clone)]
pub struct Attr {
    pub ns: Option<(&'static str, &'static str)>,
    pub name: String,
    pub value: String,
}

/// What an element holds.
#[derive(Debug, Clone)]
pub enum Child {
    El(El),
    Text(String),
    /// Bytes embedded as they are (an STS-signed ID card, byte for byte).
    Raw(String),
}

/// An element: its prefix ("" for the default namespace) and namespace.
#[derive(Debug, Clone)]
pub struct El {
    pub prefix: &'static str,
    pub ns: &'static str,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Child>,
}

impl El {
    pub fn new(prefix: &'static str, ns: &'static str, name: &str) -> El {
        El {
            prefix,
            ns,
            name: name.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds a plain attribute.
    pub fn attr(mut self, name: &str, value: &str) -> El {
        self.attrs.push(Attr {
            ns: None,
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Adds an attribute in namespace `ns` with `prefix`.
    pub fn ns_attr(
        mut self,
        prefix: &'static str,
        ns: &'static str,
        name: &str,
        value: &str,
    ) -> El {
        self.attrs.push(Attr {
            ns: Some((prefix, ns)),
            name: name.into(),
            value: value.into(),
        });
        self
    }

    pub fn child(mut self, c: El) -> El {
        self.children.push(Child::El(c));
        self
    }

    /// Adds a child element when there is one.
    pub fn child_opt(self, c: Option<El>) -> El {
        match c {
            Some(c) => self.child(c),
            None => self,
        }
    }

    pub fn text(mut self, t: &str) -> El {
        self.children.push(Child::Text(t.into()));
        self
    }

    pub fn raw(mut self, r: &str) -> El {
        self.children.push(Child::Raw(r.into()));
        self
    }

    pub fn push(&mut self, c: El) {
        self.children.push(Child::El(c));
    }

    /// The element in exclusive canonical form, as an apex (nothing rendered
    /// above it). With [`Child::Raw`] inside, the raw part is as it was given.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        self.write(&BTreeMap::new(), &mut out);
        out
    }

    fn qname(prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}:{name}")
        }
    }

    fn write(&self, rendered: &BTreeMap<String, String>, out: &mut String) {
        // the visibly utilized prefixes and their namespaces
        let mut used: BTreeMap<String, String> = BTreeMap::new();
        used.insert(self.prefix.to_string(), self.ns.to_string());
        for a in &self.attrs {
            if let Some((p, ns)) = a.ns {
                used.insert(p.to_string(), ns.to_string());
            }
        }
        let mut mine = rendered.clone();
        out.push('<');
        out.push_str(&Self::qname(self.prefix, &self.name));
        for (p, ns) in &used {
            let before = rendered.get(p).map(String::as_str);
            // exc-c14n: xmlns="" only undoes a default namespace rendered above
            // the xml prefix is bound by definition and never declared
            let skip = before == Some(ns.as_str())
                || p == "xml"
                || (p.is_empty() && ns.is_empty() && before.is_none_or(str::is_empty));
            if skip {
                continue;
            }
            if p.is_empty() {
                out.push_str(" xmlns=\"");
            } else {
                out.push_str(" xmlns:");
                out.push_str(p);
                out.push_str("=\"");
            }
            escape_attr(ns, out);
            out.push('"');
            mine.insert(p.clone(), ns.clone());
        }
        let mut attrs: Vec<&Attr> = self.attrs.iter().collect();
        attrs.sort_by(|a, b| {
            let ka = (a.ns.map(|x| x.1).unwrap_or(""), a.name.as_str());
            let kb = (b.ns.map(|x| x.1).unwrap_or(""), b.name.as_str());
            ka.cmp(&kb)
        });
        for a in attrs {
            out.push(' ');
            out.push_str(&Self::qname(a.ns.map(|x| x.0).unwrap_or(""), &a.name));
            out.push_str("=\"");
            escape_attr(&a.value, out);
            out.push('"');
        }
        out.push('>');
        for c in &self.children {
            match c {
                Child::El(e) => e.write(&mine, out),
                Child::Text(t) => escape_text(t, out),
                Child::Raw(r) => out.push_str(r),
            }
        }
        out.push_str("</");
        out.push_str(&Self::qname(self.prefix, &self.name));
        out.push('>');
    }
}

/// C14N's escaping of text.
pub fn escape_text(t: &str, out: &mut String) {
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// C14N's escaping of attribute values.
pub fn escape_attr(t: &str, out: &mut String) {
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// The prefix as written in the source of the qualified name at `start`.
fn written_prefix(source: &str, start: usize) -> &str {
    let rest = &source[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/' || c == '=')
        .unwrap_or(rest.len());
    match rest[..end].split_once(':') {
        Some((p, _)) => p,
        None => "",
    }
}

/// The exclusive canonical form of `node` as an apex, leaving out the
/// element `omit` with everything in it (the enveloped-signature transform).
pub fn exclusive(node: roxmltree::Node<'_, '_>, omit: Option<roxmltree::NodeId>) -> String {
    let mut out = String::new();
    write_node(node, omit, &BTreeMap::new(), &mut out);
    out
}

fn write_node(
    node: roxmltree::Node<'_, '_>,
    omit: Option<roxmltree::NodeId>,
    rendered: &BTreeMap<String, String>,
    out: &mut String,
) {
    let source = node.document().input_text();
    // `<` then the qualified name
    let qstart = node.range().start + 1;
    let prefix = written_prefix(source, qstart).to_string();
    let qname_len = source[qstart..]
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(0);
    let qname = &source[qstart..qstart + qname_len];
    let ns_of = |p: &str| -> String {
        if p.is_empty() {
            node.default_namespace().unwrap_or("").to_string()
        } else {
            node.lookup_namespace_uri(Some(p)).unwrap_or("").to_string()
        }
    };
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    used.insert(prefix.clone(), ns_of(&prefix));
    let mut attrs: Vec<(String, String, String, String)> = Vec::new();
    for a in node.attributes() {
        let aq = &source[a.range_qname()];
        let ap = match aq.split_once(':') {
            Some((p, _)) => p.to_string(),
            None => String::new(),
        };
        if !ap.is_empty() {
            used.insert(ap.clone(), a.namespace().unwrap_or("").to_string());
        }
        attrs.push((
            a.namespace().unwrap_or("").to_string(),
            a.name().to_string(),
            aq.to_string(),
            a.value().to_string(),
        ));
    }
    attrs.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    let mut mine = rendered.clone();
    out.push('<');
    out.push_str(qname);
    for (p, ns) in &used {
        let before = rendered.get(p).map(String::as_str);
        let skip = before == Some(ns.as_str())
            || p == "xml"
            || (p.is_empty() && ns.is_empty() && before.is_none_or(str::is_empty));
        if skip {
            continue;
        }
        if p.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(p);
            out.push_str("=\"");
        }
        escape_attr(ns, out);
        out.push('"');
        mine.insert(p.clone(), ns.clone());
    }
    for (_, _, q, v) in &attrs {
        out.push(' ');
        out.push_str(q);
        out.push_str("=\"");
        escape_attr(v, out);
        out.push('"');
    }
    out.push('>');
    for c in node.children() {
        if c.is_element() {
            if Some(c.id()) != omit {
                write_node(c, omit, &mine, out);
            }
        } else if c.is_text() {
            escape_text(c.text().unwrap_or(""), out);
        }
    }
    out.push_str("</");
    out.push_str(qname);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "urn:a";
    const B: &str = "urn:b";

    #[test]
    fn built_xml_is_its_own_canonical_form() {
        let e = El::new("a", A, "Root")
            .attr("z", "1")
            .ns_attr("b", B, "x", "q\"<&\n")
            .attr("id", "R")
            .child(El::new("a", A, "Kid").text("1 < 2 & 3 > 2\r"))
            .child(El::new("", B, "Plain").child(El::new("b", B, "Deep")));
        let text = e.canonical();
        assert_eq!(
            text,
            "<a:Root xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" id=\"R\" z=\"1\" b:x=\"q&quot;&lt;&amp;&#xA;\">\
             <a:Kid>1 &lt; 2 &amp; 3 &gt; 2&#xD;</a:Kid><Plain xmlns=\"urn:b\"><b:Deep></b:Deep></Plain></a:Root>"
        );
        let doc = roxmltree::Document::parse(&text).unwrap();
        assert_eq!(exclusive(doc.root_element(), None), text);
    }

    #[test]
    fn parsed_xml_is_canonicalized_as_exc_c14n_says() {
        // unused declarations go, used ones move to where they are used,
        // self-closing tags open, attribute order and quotes normalise
        let src = "<?xml version=\"1.0\"?>\n<r:Root xmlns:r=\"urn:r\" xmlns:unused=\"urn:u\" xmlns:s=\"urn:s\" b='2' a=\"1\" xml:lang=\"da\">\
                   <!-- gone --><s:In s:k=\"v\"/><r:Out>t&amp;</r:Out><Sig xmlns=\"urn:sig\"><x/></Sig></r:Root>";
        let doc = roxmltree::Document::parse(src).unwrap();
        let sig = doc
            .descendants()
            .find(|n| n.has_tag_name("Sig") || n.tag_name().name() == "Sig")
            .unwrap();
        assert_eq!(
            exclusive(doc.root_element(), None),
            "<r:Root xmlns:r=\"urn:r\" a=\"1\" b=\"2\" xml:lang=\"da\"><s:In xmlns:s=\"urn:s\" s:k=\"v\"></s:In><r:Out>t&amp;</r:Out>\
             <Sig xmlns=\"urn:sig\"><x></x></Sig></r:Root>"
        );
        assert_eq!(
            exclusive(doc.root_element(), Some(sig.id())),
            "<r:Root xmlns:r=\"urn:r\" a=\"1\" b=\"2\" xml:lang=\"da\"><s:In xmlns:s=\"urn:s\" s:k=\"v\"></s:In><r:Out>t&amp;</r:Out></r:Root>"
        );
        let inner = doc
            .descendants()
            .find(|n| n.tag_name().name() == "x")
            .unwrap();
        assert_eq!(exclusive(inner, None), "<x xmlns=\"urn:sig\"></x>");
    }
}
