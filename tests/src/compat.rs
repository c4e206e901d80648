//! Compatibility of D-Bus interfaces across upgrades.
//!
//! `dbus/interfaces/*.xml` is the released contract: services are upgraded one at
//! a time, so a peer built against the released XML must keep working with every
//! later version. A version may add interfaces, members and property access; it
//! may not remove or rename a member, change the signature of a method's in or
//! out arguments or of a signal, change a property's type, or take away read or
//! write access. Such a change is a new `...2` interface served beside the old
//! one.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result};

/// One change that breaks a client of the released interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    InterfaceRemoved {
        interface: String,
    },
    /// Gone under its released name (removed or renamed).
    MemberRemoved {
        interface: String,
        kind: Kind,
        name: String,
    },
    /// The types of the in arguments, the out arguments or the signal's
    /// arguments differ (an argument added, removed, retyped or turned around).
    SignatureChanged {
        interface: String,
        kind: Kind,
        name: String,
        direction: Direction,
        released: String,
        live: String,
    },
    PropertyTypeChanged {
        interface: String,
        name: String,
        released: String,
        live: String,
    },
    /// Read or write access that the released property had is gone.
    PropertyAccessNarrowed {
        interface: String,
        name: String,
        released: String,
        live: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Method,
    Signal,
    Property,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Method => "method",
            Kind::Signal => "signal",
            Kind::Property => "property",
        })
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::InterfaceRemoved { interface } => {
                write!(f, "interface {interface} was removed")
            }
            Break::MemberRemoved {
                interface,
                kind,
                name,
            } => write!(f, "{kind} {interface}.{name} was removed or renamed"),
            Break::SignatureChanged {
                interface,
                kind,
                name,
                direction,
                released,
                live,
            } => write!(
                f,
                "{kind} {interface}.{name}: {direction} arguments changed from ({released}) to ({live})"
            ),
            Break::PropertyTypeChanged {
                interface,
                name,
                released,
                live,
            } => write!(
                f,
                "property {interface}.{name}: type changed from {released} to {live}"
            ),
            Break::PropertyAccessNarrowed {
                interface,
                name,
                released,
                live,
            } => write!(
                f,
                "property {interface}.{name}: access narrowed from {released} to {live}"
            ),
        }
    }
}

/// The changes from `released` to `live` that break clients of `released`.
/// Both are introspection XML: a whole `<node>` document or a lone
/// `<interface>` element.
pub fn breaking_changes(released: &str, live: &str) -> Result<Vec<Break>> {
    let released = interfaces(released).context("the released interface XML")?;
    let live = interfaces(live).context("the live interface XML")?;
    let mut breaks = Vec::new();
    for (name, old) in &released {
        match live.get(name) {
            None => breaks.push(Break::InterfaceRemoved {
                interface: name.clone(),
            }),
            Some(new) => compare(name, old, new, &mut breaks),
        }
    }
    Ok(breaks)
}

/// What a client can rely on in one interface.
#[derive(Default)]
struct Interface {
    /// name → (in signature, out signature)
    methods: BTreeMap<String, (String, String)>,
    /// name → signature
    signals: BTreeMap<String, String>,
    /// name → (type, access)
    properties: BTreeMap<String, (String, String)>,
}

fn interfaces(xml: &str) -> Result<BTreeMap<String, Interface>> {
    let doc = roxmltree::Document::parse_with_options(
        xml,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )?;
    let mut result = BTreeMap::new();
    for iface in doc.descendants().filter(|n| n.has_tag_name("interface")) {
        let mut parsed = Interface::default();
        for member in iface.children().filter(roxmltree::Node::is_element) {
            let name = member.attribute("name").unwrap_or_default().to_owned();
            match member.tag_name().name() {
                "method" => {
                    let (mut ins, mut outs) = (String::new(), String::new());
                    for arg in member.children().filter(|n| n.has_tag_name("arg")) {
                        let ty = arg.attribute("type").unwrap_or_default();
                        // A method argument without a direction is an in argument.
                        match arg.attribute("direction") {
                            Some("out") => outs.push_str(ty),
                            _ => ins.push_str(ty),
                        }
                    }
                    parsed.methods.insert(name, (ins, outs));
                }
                "signal" => {
                    let signature = member
                        .children()
                        .filter(|n| n.has_tag_name("arg"))
                        .map(|arg| arg.attribute("type").unwrap_or_default())
                        .collect();
                    parsed.signals.insert(name, signature);
                }
                "property" => {
                    let ty = member.attribute("type").unwrap_or_default().to_owned();
                    let access = member.attribute("access").unwrap_or_default().to_owned();
                    parsed.properties.insert(name, (ty, access));
                }
                _ => {}
            }
        }
        let name = iface
            .attribute("name")
            .context("an <interface> without a name")?;
        result.insert(name.to_owned(), parsed);
    }
    Ok(result)
}

fn compare(interface: &str, old: &Interface, new: &Interface, breaks: &mut Vec<Break>) {
    let removed = |kind, name: &str| Break::MemberRemoved {
        interface: interface.to_owned(),
        kind,
        name: name.to_owned(),
    };
    let changed = |kind, name: &str, direction, released: &str, live: &str| {
        (released != live).then(|| Break::SignatureChanged {
            interface: interface.to_owned(),
            kind,
            name: name.to_owned(),
            direction,
            released: released.to_owned(),
            live: live.to_owned(),
        })
    };

    for (name, (old_in, old_out)) in &old.methods {
        match new.methods.get(name) {
            None => breaks.push(removed(Kind::Method, name)),
            Some((new_in, new_out)) => breaks.extend(
                [
                    changed(Kind::Method, name, Direction::In, old_in, new_in),
                    changed(Kind::Method, name, Direction::Out, old_out, new_out),
                ]
                .into_iter()
                .flatten(),
            ),
        }
    }
    for (name, old_sig) in &old.signals {
        match new.signals.get(name) {
            None => breaks.push(removed(Kind::Signal, name)),
            Some(new_sig) => breaks.extend(changed(
                Kind::Signal,
                name,
                Direction::Out,
                old_sig,
                new_sig,
            )),
        }
    }
    for (name, (old_type, old_access)) in &old.properties {
        let Some((new_type, new_access)) = new.properties.get(name) else {
            breaks.push(removed(Kind::Property, name));
            continue;
        };
        if old_type != new_type {
            breaks.push(Break::PropertyTypeChanged {
                interface: interface.to_owned(),
                name: name.clone(),
                released: old_type.clone(),
                live: new_type.clone(),
            });
        }
        let keeps = |what: &str| !old_access.contains(what) || new_access.contains(what);
        if !keeps("read") || !keeps("write") {
            breaks.push(Break::PropertyAccessNarrowed {
                interface: interface.to_owned(),
                name: name.clone(),
                released: old_access.clone(),
                live: new_access.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASED: &str = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <interface name="org.example.Door1">
    <!-- Opens a door; returns when it closed again. -->
    <method name="Open">
      <arg name="door" type="s" direction="in"/>
      <arg name="reason" type="s"/>
      <arg name="seconds" type="u" direction="out"/>
    </method>
    <method name="List">
      <arg name="doors" type="a(sb)" direction="out"/>
    </method>
    <signal name="Opened">
      <arg name="door" type="s"/>
      <arg name="source" type="s"/>
    </signal>
    <property name="Count" type="u" access="read"/>
    <property name="Hold" type="u" access="readwrite"/>
  </interface>
</node>
"#;

    /// RELEASED with `edit` applied to its `<interface>` element.
    fn live(edit: impl Fn(&str) -> String) -> String {
        edit(RELEASED)
    }

    fn breaks(live: &str) -> Vec<Break> {
        breaking_changes(RELEASED, live).unwrap()
    }

    #[test]
    fn the_same_interface_is_compatible() {
        assert_eq!(breaks(RELEASED), vec![]);
    }

    #[test]
    fn comments_argument_names_and_member_order_do_not_matter() {
        let live = r#"<interface name="org.example.Door1">
  <property name="Hold" type="u" access="readwrite"/>
  <property name="Count" type="u" access="read"/>
  <signal name="Opened"><arg name="which" type="s"/><arg name="why" type="s"/></signal>
  <method name="List"><arg name="all" type="a(sb)" direction="out"/></method>
  <method name="Open">
    <arg name="d" type="s" direction="in"/>
    <arg name="r" type="s" direction="in"/>
    <arg name="s" type="u" direction="out"/>
  </method>
</interface>"#;
        assert_eq!(breaks(live), vec![]);
    }

    #[test]
    fn additions_are_compatible() {
        let live = live(|x| {
            x.replace(
                r#"<property name="Count""#,
                r#"<method name="Close"><arg name="door" type="s" direction="in"/></method>
    <signal name="Closed"><arg name="door" type="s"/></signal>
    <property name="Doors" type="as" access="read"/>
    <property name="Count""#,
            )
            .replace(
                "</node>",
                r#"<interface name="org.example.Door2"><method name="Open"/></interface></node>"#,
            )
        });
        assert_eq!(breaks(&live), vec![]);
    }

    #[test]
    fn a_read_only_property_may_become_writable() {
        let live = live(|x| x.replace(r#"access="read"/>"#, r#"access="readwrite"/>"#));
        assert_eq!(breaks(&live), vec![]);
    }

    #[test]
    fn a_removed_interface_breaks() {
        let live = r#"<node><interface name="org.example.Door2"/></node>"#;
        assert_eq!(
            breaks(live),
            vec![Break::InterfaceRemoved {
                interface: "org.example.Door1".into()
            }]
        );
    }

    #[test]
    fn a_removed_or_renamed_member_breaks() {
        for (kind, from, to) in [
            (
                Kind::Method,
                r#"<method name="List">"#,
                r#"<method name="ListDoors">"#,
            ),
            (
                Kind::Signal,
                r#"<signal name="Opened">"#,
                r#"<signal name="DoorOpened">"#,
            ),
            (
                Kind::Property,
                r#"<property name="Count""#,
                r#"<property name="Doors""#,
            ),
        ] {
            let name = from.split('"').nth(1).unwrap();
            let got = breaks(&live(|x| x.replace(from, to)));
            let want = vec![Break::MemberRemoved {
                interface: "org.example.Door1".into(),
                kind,
                name: name.into(),
            }];
            assert_eq!(got, want);
            assert_eq!(
                got[0].to_string(),
                format!("{kind} org.example.Door1.{name} was removed or renamed")
            );
        }
    }

    #[test]
    fn a_changed_argument_type_breaks() {
        let live = live(|x| {
            x.replace(
                r#"<arg name="doors" type="a(sb)""#,
                r#"<arg name="doors" type="a(sbu)""#,
            )
        });
        let got = breaks(&live);
        assert_eq!(
            got,
            vec![Break::SignatureChanged {
                interface: "org.example.Door1".into(),
                kind: Kind::Method,
                name: "List".into(),
                direction: Direction::Out,
                released: "a(sb)".into(),
                live: "a(sbu)".into(),
            }]
        );
        assert_eq!(
            got[0].to_string(),
            "method org.example.Door1.List: out arguments changed from (a(sb)) to (a(sbu))"
        );
    }

    #[test]
    fn an_added_or_removed_method_argument_breaks() {
        let added = live(|x| {
            x.replace(
                r#"<arg name="reason" type="s"/>"#,
                r#"<arg name="reason" type="s"/><arg name="options" type="a{sv}" direction="in"/>"#,
            )
        });
        let removed = live(|x| x.replace(r#"<arg name="reason" type="s"/>"#, ""));
        for (live, now) in [(added, "ssa{sv}"), (removed, "s")] {
            assert_eq!(
                breaks(&live),
                vec![Break::SignatureChanged {
                    interface: "org.example.Door1".into(),
                    kind: Kind::Method,
                    name: "Open".into(),
                    direction: Direction::In,
                    released: "ss".into(),
                    live: now.into(),
                }]
            );
        }
    }

    #[test]
    fn a_turned_around_argument_breaks_both_directions() {
        let live = live(|x| {
            x.replace(
                r#"<arg name="seconds" type="u" direction="out"/>"#,
                r#"<arg name="seconds" type="u" direction="in"/>"#,
            )
        });
        let got = breaks(&live);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            matches!(&got[0], Break::SignatureChanged { direction: Direction::In, released, live, .. } if released == "ss" && live == "ssu")
        );
        assert!(
            matches!(&got[1], Break::SignatureChanged { direction: Direction::Out, released, live, .. } if released == "u" && live.is_empty())
        );
    }

    #[test]
    fn a_changed_signal_signature_breaks() {
        let live = live(|x| x.replace(r#"<arg name="source" type="s"/>"#, ""));
        assert_eq!(
            breaks(&live),
            vec![Break::SignatureChanged {
                interface: "org.example.Door1".into(),
                kind: Kind::Signal,
                name: "Opened".into(),
                direction: Direction::Out,
                released: "ss".into(),
                live: "s".into(),
            }]
        );
    }

    #[test]
    fn a_changed_property_type_breaks() {
        let live = live(|x| x.replace(r#"name="Count" type="u""#, r#"name="Count" type="t""#));
        let got = breaks(&live);
        assert_eq!(
            got,
            vec![Break::PropertyTypeChanged {
                interface: "org.example.Door1".into(),
                name: "Count".into(),
                released: "u".into(),
                live: "t".into(),
            }]
        );
        assert_eq!(
            got[0].to_string(),
            "property org.example.Door1.Count: type changed from u to t"
        );
    }

    #[test]
    fn narrowed_property_access_breaks() {
        for narrower in ["read", "write"] {
            let live = live(|x| {
                x.replace(
                    r#"name="Hold" type="u" access="readwrite""#,
                    &format!(r#"name="Hold" type="u" access="{narrower}""#),
                )
            });
            assert_eq!(
                breaks(&live),
                vec![Break::PropertyAccessNarrowed {
                    interface: "org.example.Door1".into(),
                    name: "Hold".into(),
                    released: "readwrite".into(),
                    live: narrower.into(),
                }]
            );
        }
    }

    #[test]
    fn every_break_is_listed() {
        let live = r#"<interface name="org.example.Door1">
  <method name="Open"><arg type="s" direction="in"/><arg type="u" direction="out"/></method>
  <property name="Count" type="t" access="read"/>
  <property name="Hold" type="u" access="read"/>
</interface>"#;
        let got: Vec<String> = breaks(live).iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "method org.example.Door1.List was removed or renamed",
                "method org.example.Door1.Open: in arguments changed from (ss) to (s)",
                "signal org.example.Door1.Opened was removed or renamed",
                "property org.example.Door1.Count: type changed from u to t",
                "property org.example.Door1.Hold: access narrowed from readwrite to read",
            ]
        );
    }

    #[test]
    fn malformed_xml_is_an_error() {
        let err = breaking_changes(RELEASED, "<interface name=").unwrap_err();
        assert!(
            format!("{err:#}").contains("the live interface XML"),
            "{err:#}"
        );
    }
}
