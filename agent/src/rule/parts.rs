//! The parts every metric rule is made of: the family it writes ([`DefinedFamily`]), the
//! label values it reads from an event ([`Labels`]), the number it reads
//! ([`ValueSource`]), and why an update can fail ([`ApplyError`], counted, never fatal).
//!
//! Label values are read without allocating for up to eight labels; a missing field
//! gives the empty label value, as Prometheus treats an absent label.

use super::matcher::{Event, FieldRef};
use crate::registry::FamilyId;

/// Why a matching record could not update its metric (counted, never fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("value field is missing")]
    MissingValue,
    #[error("value field is not a finite number")]
    BadValue,
    #[error("a counter cannot be increased by a negative value")]
    NegativeCounterIncrement,
}

impl ApplyError {
    pub fn reason(self) -> &'static str {
        match self {
            ApplyError::MissingValue => "missing_value",
            ApplyError::BadValue => "bad_value",
            ApplyError::NegativeCounterIncrement => "negative_increment",
        }
    }
}

/// A family a rule writes, as defined in the registry (with its definition's
/// fingerprint, for state carried over a reload).
#[derive(Debug, Clone)]
pub struct DefinedFamily {
    pub id: FamilyId,
    pub desc_fingerprint: String,
}

#[derive(Debug, Clone)]
pub(super) enum LabelSource {
    Field(FieldRef),
    Static(String),
}

/// Label values in the family's label order, from fields or constants.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    pub(super) sources: Vec<LabelSource>,
}

impl Labels {
    /// Calls `with` on the label values of an event (a missing field gives ""), without
    /// allocating for up to eight labels.
    pub fn with_values<R>(&self, event: &Event<'_>, with: impl FnOnce(&[&str]) -> R) -> R {
        const ON_STACK: usize = 8;
        fn value<'x>(source: &'x LabelSource, event: &Event<'x>) -> &'x str {
            match source {
                LabelSource::Field(field) => event.get(field).unwrap_or(""),
                LabelSource::Static(value) => value.as_str(),
            }
        }
        if self.sources.len() <= ON_STACK {
            let mut values = [""; ON_STACK];
            for (slot, source) in values.iter_mut().zip(&self.sources) {
                *slot = value(source, event);
            }
            with(&values[..self.sources.len()])
        } else {
            let values: Vec<&str> = self.sources.iter().map(|s| value(s, event)).collect();
            with(&values)
        }
    }

    /// The label values of an event, owned (for state kept beyond the record).
    pub fn owned_values(&self, event: &Event<'_>) -> Vec<String> {
        self.with_values(event, |values| {
            values.iter().map(|v| (*v).to_owned()).collect()
        })
    }

    pub(super) fn is_static(&self) -> bool {
        self.sources
            .iter()
            .all(|s| matches!(s, LabelSource::Static(_)))
    }

    pub(super) fn static_values(&self) -> Vec<&str> {
        self.sources
            .iter()
            .map(|s| match s {
                LabelSource::Static(v) => v.as_str(),
                LabelSource::Field(_) => "",
            })
            .collect()
    }

    pub(super) fn fingerprint(&self) -> String {
        self.sources
            .iter()
            .map(|s| match s {
                LabelSource::Field(field) => format!("f:{}", field.name),
                LabelSource::Static(v) => format!("s:{v}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Reads a number from a field, times a scale.
#[derive(Debug, Clone)]
pub struct ValueSource {
    pub(super) field: FieldRef,
    pub(super) scale: f64,
}

impl ValueSource {
    pub fn read(&self, event: &Event<'_>) -> Result<f64, ApplyError> {
        let text = event.get(&self.field).ok_or(ApplyError::MissingValue)?;
        let value: f64 = text.trim().parse().map_err(|_| ApplyError::BadValue)?;
        let value = value * self.scale;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(ApplyError::BadValue)
        }
    }
}
