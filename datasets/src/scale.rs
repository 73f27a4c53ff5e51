//! Scale presets of the synthetic world.

use std::fmt;
use std::str::FromStr;

use crate::DatasetError;

/// How big a world to generate. `Small` is the server's embedded default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    /// For tests: about 1k users, 100 items, well under 100k events.
    Tiny,
    /// The default: about 20k users, 1k items, 1–3M events.
    Small,
    /// Ten times `Small`.
    Medium,
    /// A hundred times `Small`.
    Large,
}

/// The size parameters a scale stands for.
#[derive(Debug, Clone, Copy)]
pub struct ScaleParams {
    pub users: usize,
    pub items: usize,
    pub categories: usize,
    /// Mean number of browsing sessions per user over the history window.
    pub sessions_per_user: f64,
    pub campaigns: usize,
    pub items_per_campaign: usize,
    /// Mean number of offer impressions per campaign item.
    pub visits_per_campaign_item: f64,
}

impl Scale {
    pub fn params(self) -> ScaleParams {
        let (users, items, categories, campaigns) = match self {
            Scale::Tiny => (1_000, 100, 12, 4),
            Scale::Small => (20_000, 1_000, 40, 20),
            Scale::Medium => (200_000, 10_000, 120, 60),
            Scale::Large => (2_000_000, 100_000, 400, 200),
        };
        let (sessions_per_user, visits) = match self {
            Scale::Tiny => (6.0, 60.0),
            _ => (12.0, 120.0),
        };
        ScaleParams {
            users,
            items,
            categories,
            sessions_per_user,
            campaigns,
            items_per_campaign: (items / 10).clamp(10, 2_000),
            visits_per_campaign_item: visits,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scale::Tiny => "tiny",
            Scale::Small => "small",
            Scale::Medium => "medium",
            Scale::Large => "large",
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scale {
    type Err = DatasetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tiny" => Ok(Scale::Tiny),
            "small" => Ok(Scale::Small),
            "medium" => Ok(Scale::Medium),
            "large" => Ok(Scale::Large),
            other => Err(DatasetError::UnknownScale(other.to_string())),
        }
    }
}
