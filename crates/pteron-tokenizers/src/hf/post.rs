//! `post_processor` section of tokenizer.json (single-sequence only).

use std::collections::HashMap;

use serde_json::Value;

use super::json::{arr, get, obj, type_of, u32_of, FORMAT};
use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) enum TemplatePart {
    Special(Vec<u32>),
    Sequence,
}

#[derive(Debug)]
pub(crate) enum PostProcessor {
    Sequence(Vec<PostProcessor>),
    /// Adds nothing to the ids (offset trimming only).
    ByteLevel,
    Template(Vec<TemplatePart>),
    /// `cls A sep` (RobertaProcessing / BertProcessing).
    ClsSep {
        cls: u32,
        sep: u32,
    },
}

fn token_pair(v: &Value, what: &str) -> Result<u32> {
    let a = arr(v, what)?;
    match a.as_slice() {
        [Value::String(_), id] => u32_of(id, what),
        _ => Err(Error::malformed(
            FORMAT,
            format!("{what} must be [token, id]"),
        )),
    }
}

impl PostProcessor {
    pub(crate) fn from_json(v: &Value) -> Result<Self> {
        let m = obj(v, "post_processor")?;
        let ty = type_of(m, "post_processor")?;
        Ok(match ty {
            "Sequence" => PostProcessor::Sequence(
                arr(
                    get(m, "processors", "Sequence post_processor")?,
                    "processors",
                )?
                .iter()
                .map(PostProcessor::from_json)
                .collect::<Result<_>>()?,
            ),
            "ByteLevel" => PostProcessor::ByteLevel,
            "RobertaProcessing" | "BertProcessing" => PostProcessor::ClsSep {
                cls: token_pair(get(m, "cls", ty)?, "cls")?,
                sep: token_pair(get(m, "sep", ty)?, "sep")?,
            },
            "TemplateProcessing" => {
                let mut specials: HashMap<&str, Vec<u32>> = HashMap::new();
                if let Some(st) = m.get("special_tokens").filter(|v| !v.is_null()) {
                    for (name, spec) in obj(st, "special_tokens")? {
                        let spec = obj(spec, "special token")?;
                        let ids = arr(get(spec, "ids", "special token")?, "ids")?
                            .iter()
                            .map(|x| u32_of(x, "special token id"))
                            .collect::<Result<Vec<_>>>()?;
                        specials.insert(name.as_str(), ids);
                    }
                }
                let mut parts = Vec::new();
                for p in arr(get(m, "single", "TemplateProcessing")?, "single")? {
                    let pm = obj(p, "template piece")?;
                    if let Some(s) = pm.get("SpecialToken") {
                        let id =
                            super::json::str_field(obj(s, "SpecialToken")?, "id", "SpecialToken")?;
                        let ids = specials.get(id).ok_or_else(|| {
                            Error::malformed(
                                FORMAT,
                                format!("template special token {id:?} not declared"),
                            )
                        })?;
                        parts.push(TemplatePart::Special(ids.clone()));
                    } else if pm.contains_key("Sequence") {
                        parts.push(TemplatePart::Sequence);
                    } else {
                        return Err(Error::malformed(
                            FORMAT,
                            "template piece must be SpecialToken or Sequence",
                        ));
                    }
                }
                PostProcessor::Template(parts)
            }
            other => {
                return Err(Error::unsupported(
                    FORMAT,
                    format!("post_processor {other}"),
                ))
            }
        })
    }

    pub(crate) fn process(&self, ids: Vec<u32>) -> Vec<u32> {
        match self {
            PostProcessor::Sequence(v) => v.iter().fold(ids, |acc, p| p.process(acc)),
            PostProcessor::ByteLevel => ids,
            PostProcessor::ClsSep { cls, sep } => {
                let mut out = Vec::with_capacity(ids.len() + 2);
                out.push(*cls);
                out.extend(ids);
                out.push(*sep);
                out
            }
            PostProcessor::Template(parts) => {
                let mut out = Vec::with_capacity(ids.len() + parts.len());
                let mut seq = Some(ids);
                for p in parts {
                    match p {
                        TemplatePart::Special(s) => out.extend_from_slice(s),
                        TemplatePart::Sequence => {
                            if let Some(s) = seq.take() {
                                out.extend(s);
                            }
                        }
                    }
                }
                out
            }
        }
    }

    /// The first id the processor puts in front of the sequence, if any.
    pub(crate) fn leading_special(&self) -> Option<u32> {
        match self {
            PostProcessor::Sequence(v) => v.iter().find_map(PostProcessor::leading_special),
            PostProcessor::ByteLevel => None,
            PostProcessor::ClsSep { cls, .. } => Some(*cls),
            PostProcessor::Template(parts) => match parts.first() {
                Some(TemplatePart::Special(ids)) => ids.first().copied(),
                _ => None,
            },
        }
    }
}
