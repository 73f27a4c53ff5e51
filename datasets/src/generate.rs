//! The deterministic generator of the flash-sale world's logs.
//!
//! The world is drawn first (users with latent types, items, campaigns), then flash sales are
//! simulated in time order with a known randomised logging policy and hard inventory limits,
//! then each user's browsing history is drawn and merged with the events the sales produced.
//! Every random draw comes from a ChaCha8 stream derived from the seed and the entity it
//! belongs to, so the output depends on the seed and scale only.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, Int64Builder, ListBuilder,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal, Poisson};

use crate::DatasetError;
use crate::scale::{Scale, ScaleParams};
use crate::world::{
    BETA_LOG_SD, DISCOUNT_LEVELS, Offer, TYPES, USER_BIAS_SD, UserTruth, purchase_probability,
};

/// Start of the simulated history: 2026-10-01T00:00:00Z, in microseconds since the epoch.
pub const HISTORY_START_US: i64 = 1_790_812_800_000_000;
/// Length of the simulated history in days; flash sales run in its last 14 days.
pub const HISTORY_DAYS: i64 = 35;
const DAY_US: i64 = 86_400_000_000;
const HOUR_US: i64 = 3_600_000_000;
/// Share of offers the logging policy chooses uniformly at random.
pub const POLICY_EPSILON: f64 = 0.2;
/// Rows per record batch of the large tables.
const BATCH_ROWS: usize = 65_536;

/// Event types, in the order of `TypeParams::event_mix`.
pub const EVENT_TYPES: [&str; 5] = ["view", "search", "cart", "fav", "purchase"];
/// Visible user segments.
pub const SEGMENTS: [&str; 4] = ["new", "active", "dormant", "vip"];
/// Logging-policy preference for deeper discounts, per segment (see [`policy_probabilities`]).
pub const SEGMENT_DISCOUNT_PREFERENCE: [f64; 4] = [4.0, 0.0, 6.0, -3.0];

/// One generated table.
#[derive(Debug, Clone)]
pub struct GeneratedTable {
    pub schema: &'static str,
    pub name: &'static str,
    pub arrow_schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The columns the rows are generated in order of (ascending), declared as the table's
    /// sort order: events come out per user, in time.
    pub sort_by: &'static [&'static str],
}

impl GeneratedTable {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// A generated world: the observable tables in `public`, the ground truth in `truth`.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub scale: Scale,
    pub seed: u64,
    pub tables: Vec<GeneratedTable>,
}

impl Dataset {
    pub fn table(&self, schema: &str, name: &str) -> Option<&GeneratedTable> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }
}

/// Derives an independent random stream for one entity of one kind.
fn stream(seed: u64, kind: u64, index: u64) -> ChaCha8Rng {
    // SplitMix64 finaliser over the three inputs: cheap and well mixed.
    let mut z = seed
        .wrapping_add(kind.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

const K_USERS: u64 = 1;
const K_ITEMS: u64 = 2;
const K_CAMPAIGN: u64 = 3;
const K_HISTORY: u64 = 4;

/// Samples an index from cumulative weights.
fn pick_cumulative(cum: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total = *cum.last().unwrap_or(&0.0);
    let x = rng.random::<f64>() * total;
    cum.partition_point(|&c| c <= x)
        .min(cum.len().saturating_sub(1))
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}

fn normal(mean: f64, sd: f64) -> Normal<f64> {
    Normal::new(mean, sd).expect("constant normal parameters are valid")
}

/// The logging policy's probability of each allowed discount level for a segment.
///
/// A mixture of uniform exploration (share [`POLICY_EPSILON`]) and a softmax over the
/// levels with a segment-dependent preference for deep discounts. `levels` must be non-empty.
pub fn policy_probabilities(segment: usize, levels: &[f64]) -> Vec<f64> {
    let theta = SEGMENT_DISCOUNT_PREFERENCE[segment];
    let scores: Vec<f64> = levels.iter().map(|d| (theta * d).exp()).collect();
    let z: f64 = scores.iter().sum();
    let k = levels.len() as f64;
    scores
        .iter()
        .map(|s| POLICY_EPSILON / k + (1.0 - POLICY_EPSILON) * s / z)
        .collect()
}

struct User {
    truth: UserTruth,
    segment: usize,
    signup_us: i64,
    activity: f64,
}

struct Item {
    category: u32,
    price: f64,
    unit_cost: f64,
    inventory: i64,
}

#[derive(Clone, Copy)]
struct Event {
    ts: i64,
    item: Option<i64>,
    category: i64,
    kind: u8,
    price: Option<f64>,
    discount: f64,
    campaign: Option<i64>,
}

struct Exposure {
    user: i64,
    item: i64,
    campaign: i64,
    discount: f64,
    shown_us: i64,
    time_left: f64,
    propensity: f64,
    purchased: bool,
    true_prob: f64,
}

struct CampaignItem {
    campaign: i64,
    item: i64,
    start_us: i64,
    end_us: i64,
    max_discount: f64,
    budget: f64,
    /// Units put on sale.
    allotment: i64,
    units_sold: i64,
}

/// Generates the world for `scale` from `seed`.
pub fn generate(scale: Scale, seed: u64) -> Result<Dataset, DatasetError> {
    let p = scale.params();
    let categories = draw_categories(&p, seed);
    let items = draw_items(&p, seed, &categories);
    let users = draw_users(&p, seed);
    let mut items_by_category: Vec<Vec<usize>> = vec![Vec::new(); p.categories];
    for (i, item) in items.iter().enumerate() {
        items_by_category[item.category as usize].push(i);
    }
    let category_cum = cumulative(categories.iter().map(|c| c.popularity));

    let mut campaign_events: Vec<Vec<Event>> = vec![Vec::new(); users.len()];
    let (campaign_items, exposures) =
        run_flash_sales(&p, seed, &users, &items, &categories, &mut campaign_events);

    let events = draw_histories(
        &p,
        seed,
        &users,
        &items,
        &items_by_category,
        &category_cum,
        campaign_events,
    );

    let tables = vec![
        users_table(&users),
        items_table(&items),
        events,
        campaigns_table(&campaign_items),
        exposures_table(&exposures),
        truth_users_table(&users),
        truth_items_table(&items, &categories),
        truth_exposures_table(&exposures),
        truth_response_table(),
    ];
    Ok(Dataset {
        scale,
        seed,
        tables: tables.into_iter().collect::<Result<_, _>>()?,
    })
}

struct Category {
    popularity: f64,
    ref_price: f64,
}

fn draw_categories(p: &ScaleParams, seed: u64) -> Vec<Category> {
    let mut rng = stream(seed, K_ITEMS, u64::MAX);
    let price: LogNormal<f64> = LogNormal::new(3.5, 0.8).expect("valid lognormal");
    (0..p.categories)
        .map(|c| Category {
            popularity: 1.0 / ((c + 1) as f64).powf(0.8),
            ref_price: (price.sample(&mut rng) * 100.0).round() / 100.0 + 1.0,
        })
        .collect()
}

fn draw_items(p: &ScaleParams, seed: u64, categories: &[Category]) -> Vec<Item> {
    let cum = cumulative(categories.iter().map(|c| c.popularity));
    let spread = normal(0.0, 0.35);
    (0..p.items)
        .map(|i| {
            let mut rng = stream(seed, K_ITEMS, i as u64);
            // Every category gets at least one item; the rest follow popularity.
            let category = if i < categories.len() {
                i
            } else {
                pick_cumulative(&cum, &mut rng)
            };
            let price = (categories[category].ref_price * spread.sample(&mut rng).exp() * 100.0)
                .round()
                / 100.0;
            let price = price.max(0.5);
            let unit_cost = (price * rng.random_range(0.45..0.75) * 100.0).round() / 100.0;
            Item {
                category: category as u32,
                price,
                unit_cost,
                inventory: rng.random_range(20..500),
            }
        })
        .collect()
}

fn draw_users(p: &ScaleParams, seed: u64) -> Vec<User> {
    let type_cum = cumulative(TYPES.iter().map(|t| t.share));
    let bias = normal(0.0, USER_BIAS_SD);
    let beta_mult = normal(0.0, BETA_LOG_SD);
    let activity = LogNormal::new(0.0, 0.4).expect("valid lognormal");
    (0..p.users)
        .map(|u| {
            let mut rng = stream(seed, K_USERS, u as u64);
            let type_id = pick_cumulative(&type_cum, &mut rng);
            let t = &TYPES[type_id];
            let mut favourites = Vec::with_capacity(t.favourites);
            while favourites.len() < t.favourites.min(p.categories) {
                // Favourites lean towards popular categories, as real affinities do.
                let c = (rng.random::<f64>().powi(2) * p.categories as f64) as u32;
                if !favourites.contains(&c) {
                    favourites.push(c);
                }
            }
            let new_user = rng.random::<f64>() < 0.12;
            let signup_us = if new_user {
                HISTORY_START_US + rng.random_range(0..(HISTORY_DAYS - 7) * DAY_US)
            } else {
                HISTORY_START_US - rng.random_range(DAY_US..730 * DAY_US)
            };
            let r = rng.random::<f64>();
            let segment = if new_user {
                0
            } else {
                let (vip, dormant) = match type_id {
                    1 => (0.45, 0.05),
                    2 => (0.05, 0.35),
                    _ => (0.08, 0.12),
                };
                if r < vip {
                    3
                } else if r < vip + dormant {
                    2
                } else {
                    1
                }
            };
            User {
                truth: UserTruth {
                    type_id,
                    bias: bias.sample(&mut rng),
                    beta: t.beta * beta_mult.sample(&mut rng).exp(),
                    favourites,
                },
                segment,
                signup_us,
                activity: activity.sample(&mut rng),
            }
        })
        .collect()
}

fn hour_of(ts_us: i64) -> f64 {
    (ts_us.rem_euclid(DAY_US)) as f64 / HOUR_US as f64
}

/// Simulates every flash sale: offers shown in time order until each item's allotment runs out.
fn run_flash_sales(
    p: &ScaleParams,
    seed: u64,
    users: &[User],
    items: &[Item],
    categories: &[Category],
    campaign_events: &mut [Vec<Event>],
) -> (Vec<CampaignItem>, Vec<Exposure>) {
    let user_cum = cumulative(
        users
            .iter()
            .map(|u| TYPES[u.truth.type_id].sale_interest * u.activity),
    );
    let mut campaign_items = Vec::new();
    let mut exposures = Vec::new();
    for c in 0..p.campaigns {
        let mut rng = stream(seed, K_CAMPAIGN, c as u64);
        let campaign_id = c as i64 + 1;
        let day = HISTORY_DAYS - 14 + rng.random_range(0..14);
        let start_us = HISTORY_START_US + day * DAY_US + rng.random_range(8..20) * HOUR_US;
        let end_us = start_us + rng.random_range(2..7) * HOUR_US;
        let n_items = p.items_per_campaign.min(items.len());
        let mut chosen: Vec<usize> = Vec::with_capacity(n_items);
        while chosen.len() < n_items {
            let i = rng.random_range(0..items.len());
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chosen.sort_unstable();
        // (time, campaign item index, user)
        let mut visits: Vec<(i64, usize, usize)> = Vec::new();
        let mut stock = Vec::with_capacity(n_items);
        let visits_dist = Poisson::new(p.visits_per_campaign_item).expect("positive visit rate");
        for (k, &i) in chosen.iter().enumerate() {
            let max_discount = DISCOUNT_LEVELS[rng.random_range(3..DISCOUNT_LEVELS.len())];
            let n_visits = visits_dist.sample(&mut rng) as usize;
            // Allotments are tight enough that popular items sell out.
            let allotment =
                ((n_visits as f64 * 0.06 * rng.random_range(0.5..1.5)).round() as i64).max(1);
            stock.push(allotment);
            campaign_items.push(CampaignItem {
                campaign: campaign_id,
                item: i as i64 + 1,
                start_us,
                end_us,
                max_discount,
                budget: (allotment as f64 * items[i].price * max_discount * 0.6 * 100.0).round()
                    / 100.0,
                allotment,
                units_sold: 0,
            });
            let mut drawn = 0;
            while drawn < n_visits {
                let u = pick_cumulative(&user_cum, &mut rng);
                let fav = users[u].truth.favourites.contains(&items[i].category);
                if fav || rng.random::<f64>() < 0.4 {
                    let t = rng.random_range(start_us..end_us);
                    visits.push((t, k, u));
                    drawn += 1;
                }
            }
        }
        visits.sort_unstable();
        let first = campaign_items.len() - n_items;
        for (t, k, u) in visits {
            if stock[k] == 0 {
                continue; // sold out: the offer is no longer shown
            }
            let (ci_item, ci_start, ci_end, ci_max) = {
                let ci = &campaign_items[first + k];
                (ci.item, ci.start_us, ci.end_us, ci.max_discount)
            };
            let item = &items[chosen[k]];
            let user = &users[u];
            let levels: Vec<f64> = DISCOUNT_LEVELS
                .iter()
                .copied()
                .filter(|&d| d <= ci_max + 1e-12)
                .collect();
            let probs = policy_probabilities(user.segment, &levels);
            let level = pick_cumulative(&cumulative(probs.iter().copied()), &mut rng);
            let discount = levels[level];
            let time_left = (ci_end - t) as f64 / (ci_end - ci_start) as f64;
            let true_prob = purchase_probability(
                &user.truth,
                &Offer {
                    category: item.category,
                    price: item.price,
                    ref_price: categories[item.category as usize].ref_price,
                    discount,
                    time_left,
                    hour: hour_of(t),
                },
            );
            let purchased = rng.random::<f64>() < true_prob;
            let paid = ((item.price * (1.0 - discount)) * 100.0).round() / 100.0;
            let ev = Event {
                ts: t,
                item: Some(ci_item),
                category: item.category as i64,
                kind: 0,
                price: Some(paid),
                discount,
                campaign: Some(campaign_id),
            };
            campaign_events[u].push(ev);
            if purchased {
                stock[k] -= 1;
                campaign_items[first + k].units_sold += 1;
                campaign_events[u].push(Event {
                    ts: t + 20_000_000,
                    kind: 2,
                    ..ev
                });
                campaign_events[u].push(Event {
                    ts: t + 45_000_000,
                    kind: 4,
                    ..ev
                });
            }
            exposures.push(Exposure {
                user: u as i64 + 1,
                item: ci_item,
                campaign: campaign_id,
                discount,
                shown_us: t,
                time_left,
                propensity: probs[level],
                purchased,
                true_prob,
            });
        }
    }
    (campaign_items, exposures)
}

/// Draws each user's browsing history and merges in the events of the flash sales.
fn draw_histories(
    p: &ScaleParams,
    seed: u64,
    users: &[User],
    items: &[Item],
    items_by_category: &[Vec<usize>],
    category_cum: &[f64],
    campaign_events: Vec<Vec<Event>>,
) -> Result<GeneratedTable, DatasetError> {
    let schema = events_schema();
    let mut out = EventBatcher::new(schema.clone());
    let gap = Exp::new(1.0 / 45.0).expect("positive rate");
    let hour_noise = normal(0.0, 3.0);
    let end_us = HISTORY_START_US + HISTORY_DAYS * DAY_US;
    let mut seq: Vec<Event> = Vec::new();
    for (u, (user, extra)) in users.iter().zip(campaign_events).enumerate() {
        let mut rng = stream(seed, K_HISTORY, u as u64);
        let t = &TYPES[user.truth.type_id];
        let first_us = user.signup_us.max(HISTORY_START_US);
        let days = ((end_us - first_us) / DAY_US).max(1);
        let window_share = days as f64 / HISTORY_DAYS as f64;
        let lambda = p.sessions_per_user * t.activity * user.activity * window_share;
        let n_sessions = Poisson::new(lambda.max(0.05))
            .map(|d| d.sample(&mut rng) as usize)
            .unwrap_or(0);
        let mix_cum = cumulative(t.event_mix.iter().copied());
        seq.clear();
        seq.extend(extra);
        for _ in 0..n_sessions {
            let day = rng.random_range(0..days);
            let hour = (t.peak_hour + hour_noise.sample(&mut rng)).rem_euclid(24.0);
            let mut ts = (first_us / DAY_US + day) * DAY_US + (hour * HOUR_US as f64) as i64;
            // Geometric session length with the type's mean.
            let stop = 1.0 / t.session_len;
            loop {
                let kind = pick_cumulative(&mix_cum, &mut rng) as u8;
                let category = if rng.random::<f64>() < t.concentration {
                    user.truth.favourites[rng.random_range(0..user.truth.favourites.len())] as usize
                } else {
                    pick_cumulative(category_cum, &mut rng)
                };
                let pool = &items_by_category[category];
                let item = if kind == 1 || pool.is_empty() {
                    None // a search names a category, not an item
                } else {
                    Some(pool[rng.random_range(0..pool.len())])
                };
                seq.push(Event {
                    ts,
                    item: item.map(|i| i as i64 + 1),
                    category: category as i64,
                    kind,
                    price: item.map(|i| items[i].price),
                    discount: 0.0,
                    campaign: None,
                });
                if rng.random::<f64>() < stop {
                    break;
                }
                ts += (gap.sample(&mut rng) * 1e6) as i64 + 1_000_000;
            }
        }
        seq.sort_by_key(|e| (e.ts, e.kind));
        for e in &seq {
            out.push(u as i64 + 1, e)?;
        }
    }
    Ok(GeneratedTable {
        schema: "public",
        name: "events",
        arrow_schema: schema,
        batches: out.finish()?,
        sort_by: &["user_id", "ts"],
    })
}

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, None),
        nullable,
    )
}

fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("item_id", DataType::Int64, true),
        Field::new("category_id", DataType::Int64, false),
        Field::new("event_type", DataType::Utf8, false),
        ts_field("ts", false),
        Field::new("price", DataType::Float64, true),
        Field::new("discount", DataType::Float64, false),
        Field::new("campaign_id", DataType::Int64, true),
    ]))
}

/// Accumulates events column-wise and cuts record batches of `BATCH_ROWS`.
struct EventBatcher {
    schema: SchemaRef,
    user: Vec<i64>,
    item: Vec<Option<i64>>,
    category: Vec<i64>,
    kind: Vec<&'static str>,
    ts: Vec<i64>,
    price: Vec<Option<f64>>,
    discount: Vec<f64>,
    campaign: Vec<Option<i64>>,
    batches: Vec<RecordBatch>,
}

impl EventBatcher {
    fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            user: Vec::new(),
            item: Vec::new(),
            category: Vec::new(),
            kind: Vec::new(),
            ts: Vec::new(),
            price: Vec::new(),
            discount: Vec::new(),
            campaign: Vec::new(),
            batches: Vec::new(),
        }
    }

    fn push(&mut self, user: i64, e: &Event) -> Result<(), DatasetError> {
        self.user.push(user);
        self.item.push(e.item);
        self.category.push(e.category);
        self.kind.push(EVENT_TYPES[e.kind as usize]);
        self.ts.push(e.ts);
        self.price.push(e.price);
        self.discount.push(e.discount);
        self.campaign.push(e.campaign);
        if self.user.len() >= BATCH_ROWS {
            self.cut()?;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<(), DatasetError> {
        if self.user.is_empty() {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(std::mem::take(&mut self.user))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.item))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.category))),
            Arc::new(StringArray::from(std::mem::take(&mut self.kind))),
            Arc::new(TimestampMicrosecondArray::from(std::mem::take(
                &mut self.ts,
            ))),
            Arc::new(Float64Array::from(std::mem::take(&mut self.price))),
            Arc::new(Float64Array::from(std::mem::take(&mut self.discount))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.campaign))),
        ];
        self.batches
            .push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<RecordBatch>, DatasetError> {
        self.cut()?;
        Ok(self.batches)
    }
}

fn single(
    schema: &'static str,
    name: &'static str,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
) -> Result<GeneratedTable, DatasetError> {
    let arrow_schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(arrow_schema.clone(), columns)?;
    Ok(GeneratedTable {
        schema,
        name,
        arrow_schema,
        batches: vec![batch],
        sort_by: &[],
    })
}

fn ids(n: usize) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(1..=n as i64))
}

fn users_table(users: &[User]) -> Result<GeneratedTable, DatasetError> {
    single(
        "public",
        "users",
        vec![
            Field::new("user_id", DataType::Int64, false),
            ts_field("signup_ts", false),
            Field::new("segment", DataType::Utf8, false),
        ],
        vec![
            ids(users.len()),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                users.iter().map(|u| u.signup_us),
            )),
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|u| SEGMENTS[u.segment]),
            )),
        ],
    )
}

fn items_table(items: &[Item]) -> Result<GeneratedTable, DatasetError> {
    single(
        "public",
        "items",
        vec![
            Field::new("item_id", DataType::Int64, false),
            Field::new("category_id", DataType::Int64, false),
            Field::new("base_price", DataType::Float64, false),
            Field::new("unit_cost", DataType::Float64, false),
            Field::new("inventory", DataType::Int64, false),
        ],
        vec![
            ids(items.len()),
            Arc::new(Int64Array::from_iter_values(
                items.iter().map(|i| i.category as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                items.iter().map(|i| i.price),
            )),
            Arc::new(Float64Array::from_iter_values(
                items.iter().map(|i| i.unit_cost),
            )),
            Arc::new(Int64Array::from_iter_values(
                items.iter().map(|i| i.inventory),
            )),
        ],
    )
}

fn campaigns_table(rows: &[CampaignItem]) -> Result<GeneratedTable, DatasetError> {
    single(
        "public",
        "campaigns",
        vec![
            Field::new("campaign_id", DataType::Int64, false),
            Field::new("item_id", DataType::Int64, false),
            ts_field("start_ts", false),
            ts_field("end_ts", false),
            Field::new("discount", DataType::Float64, false),
            Field::new("budget", DataType::Float64, false),
            Field::new("allotment", DataType::Int64, false),
            Field::new("units_sold", DataType::Int64, false),
        ],
        vec![
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.campaign),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.item))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.start_us),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.end_us),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.max_discount),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.budget),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.allotment),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.units_sold),
            )),
        ],
    )
}

fn exposures_table(rows: &[Exposure]) -> Result<GeneratedTable, DatasetError> {
    single(
        "public",
        "exposures",
        vec![
            Field::new("exposure_id", DataType::Int64, false),
            Field::new("user_id", DataType::Int64, false),
            Field::new("item_id", DataType::Int64, false),
            Field::new("campaign_id", DataType::Int64, false),
            Field::new("discount", DataType::Float64, false),
            ts_field("shown_ts", false),
            Field::new("time_left", DataType::Float64, false),
            Field::new("propensity", DataType::Float64, false),
            Field::new("purchased", DataType::Boolean, false),
        ],
        vec![
            ids(rows.len()),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.user))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.item))),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.campaign),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.discount),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.shown_us),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.time_left),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.propensity),
            )),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.purchased).collect::<Vec<_>>(),
            )),
        ],
    )
}

fn truth_users_table(users: &[User]) -> Result<GeneratedTable, DatasetError> {
    let mut favs = ListBuilder::new(Int64Builder::new());
    for u in users {
        for &c in &u.truth.favourites {
            favs.values().append_value(c as i64);
        }
        favs.append(true);
    }
    let favs = favs.finish();
    let list_field = favs.data_type().clone();
    single(
        "truth",
        "users",
        vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("type_id", DataType::Int32, false),
            Field::new("latent_type", DataType::Utf8, false),
            Field::new("bias", DataType::Float64, false),
            Field::new("discount_sensitivity", DataType::Float64, false),
            Field::new("favourite_categories", list_field, false),
        ],
        vec![
            ids(users.len()),
            Arc::new(Int32Array::from_iter_values(
                users.iter().map(|u| u.truth.type_id as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|u| TYPES[u.truth.type_id].name),
            )),
            Arc::new(Float64Array::from_iter_values(
                users.iter().map(|u| u.truth.bias),
            )),
            Arc::new(Float64Array::from_iter_values(
                users.iter().map(|u| u.truth.beta),
            )),
            Arc::new(favs),
        ],
    )
}

fn truth_items_table(
    items: &[Item],
    categories: &[Category],
) -> Result<GeneratedTable, DatasetError> {
    single(
        "truth",
        "items",
        vec![
            Field::new("item_id", DataType::Int64, false),
            Field::new("ref_price", DataType::Float64, false),
        ],
        vec![
            ids(items.len()),
            Arc::new(Float64Array::from_iter_values(
                items
                    .iter()
                    .map(|i| categories[i.category as usize].ref_price),
            )),
        ],
    )
}

fn truth_exposures_table(rows: &[Exposure]) -> Result<GeneratedTable, DatasetError> {
    single(
        "truth",
        "exposures",
        vec![
            Field::new("exposure_id", DataType::Int64, false),
            Field::new("true_prob", DataType::Float64, false),
        ],
        vec![
            ids(rows.len()),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.true_prob),
            )),
        ],
    )
}

fn truth_response_table() -> Result<GeneratedTable, DatasetError> {
    let f = |name: &str| Field::new(name, DataType::Float64, false);
    let col = |g: fn(&crate::world::TypeParams) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(TYPES.iter().map(g)))
    };
    single(
        "truth",
        "response",
        vec![
            Field::new("type_id", DataType::Int32, false),
            Field::new("latent_type", DataType::Utf8, false),
            f("share"),
            f("b0"),
            f("beta"),
            f("rho"),
            f("kappa"),
            f("peak_hour"),
            f("affinity"),
            f("hour_amplitude"),
            f("user_bias_sd"),
            f("beta_log_sd"),
        ],
        vec![
            Arc::new(Int32Array::from_iter_values(0..TYPES.len() as i32)),
            Arc::new(StringArray::from_iter_values(TYPES.iter().map(|t| t.name))),
            col(|t| t.share),
            col(|t| t.b0),
            col(|t| t.beta),
            col(|t| t.rho),
            col(|t| t.kappa),
            col(|t| t.peak_hour),
            col(|_| crate::world::AFFINITY),
            col(|_| crate::world::HOUR_AMPLITUDE),
            col(|_| USER_BIAS_SD),
            col(|_| BETA_LOG_SD),
        ],
    )
}
