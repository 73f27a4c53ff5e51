//! The ground truth of the synthetic world: latent user types, their behaviour and their
//! purchase response to price and discount.
//!
//! The response is a known logistic function so that every model and policy trained on the
//! generated logs can be scored against the true probabilities (`truth.*` tables):
//!
//! ```text
//! logit P(buy | u, i, d, τ, h) = b0[t] + bias_u + AFFINITY·1[cat(i) ∈ fav(u)]
//!                               − rho[t]·ln(price_i / ref_price(cat(i)))
//!                               + beta_u·d
//!                               + kappa[t]·(1 − τ)
//!                               + HOUR_AMPLITUDE·cos(2π(h − peak_hour[t]) / 24)
//! ```
//! with t the user's latent type, d the discount as a fraction of the base price, τ the share of
//! the flash sale still to run (1 at its start, near 0 at its end) and h the hour of day.
//! `beta_u = beta[t] · exp(N(0, 0.25²))` is the user's own discount sensitivity.

/// Weight of a user's favourite categories in the response.
pub const AFFINITY: f64 = 1.0;
/// Amplitude of the time-of-day term in the response.
pub const HOUR_AMPLITUDE: f64 = 0.3;
/// Standard deviation of the per-user intercept.
pub const USER_BIAS_SD: f64 = 0.5;
/// Standard deviation of the log of the per-user multiplier of the type's discount slope.
pub const BETA_LOG_SD: f64 = 0.25;

/// Discount levels (fractions of the base price) a flash sale may offer.
pub const DISCOUNT_LEVELS: [f64; 7] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5];

/// Everything that differs between latent user types.
#[derive(Debug, Clone, Copy)]
pub struct TypeParams {
    pub name: &'static str,
    /// Share of the population.
    pub share: f64,
    /// Intercept of the purchase logit.
    pub b0: f64,
    /// Mean slope of the logit in the discount (per unit of discount fraction).
    pub beta: f64,
    /// Price-level sensitivity.
    pub rho: f64,
    /// Urgency: extra logit at the very end of a sale.
    pub kappa: f64,
    /// Hour of day around which the user is active and most willing to buy.
    pub peak_hour: f64,
    /// Relative frequency of browsing sessions.
    pub activity: f64,
    /// Mean events per browsing session.
    pub session_len: f64,
    /// Event mix in browsing sessions: view, search, cart, fav, purchase.
    pub event_mix: [f64; 5],
    /// Probability that an event is in one of the user's favourite categories.
    pub concentration: f64,
    /// Number of favourite categories.
    pub favourites: usize,
    /// Relative propensity to visit flash sales.
    pub sale_interest: f64,
}

/// The four latent types. Index = `type_id`.
pub const TYPES: [TypeParams; 4] = [
    TypeParams {
        name: "bargain_hunter",
        share: 0.30,
        b0: -3.2,
        beta: 9.0,
        rho: 1.2,
        kappa: 0.3,
        peak_hour: 21.0,
        activity: 1.0,
        session_len: 8.0,
        event_mix: [0.50, 0.34, 0.09, 0.05, 0.02],
        concentration: 0.35,
        favourites: 4,
        sale_interest: 2.0,
    },
    TypeParams {
        name: "loyal",
        share: 0.20,
        b0: -1.2,
        beta: 1.5,
        rho: 0.3,
        kappa: 0.0,
        peak_hour: 9.0,
        activity: 0.8,
        session_len: 6.0,
        event_mix: [0.52, 0.06, 0.20, 0.15, 0.07],
        concentration: 0.85,
        favourites: 2,
        sale_interest: 0.7,
    },
    TypeParams {
        name: "browser",
        share: 0.35,
        b0: -4.0,
        beta: 3.0,
        rho: 0.8,
        kappa: 0.2,
        peak_hour: 15.0,
        activity: 1.2,
        session_len: 14.0,
        event_mix: [0.82, 0.12, 0.03, 0.025, 0.005],
        concentration: 0.45,
        favourites: 3,
        sale_interest: 0.8,
    },
    TypeParams {
        name: "impulse",
        share: 0.15,
        b0: -2.0,
        beta: 5.0,
        rho: 0.5,
        kappa: 1.2,
        peak_hour: 23.0,
        activity: 0.9,
        session_len: 4.0,
        event_mix: [0.55, 0.05, 0.25, 0.03, 0.12],
        concentration: 0.55,
        favourites: 3,
        sale_interest: 1.4,
    },
];

/// One user's hidden state.
#[derive(Debug, Clone)]
pub struct UserTruth {
    pub type_id: usize,
    pub bias: f64,
    pub beta: f64,
    pub favourites: Vec<u32>,
}

/// The observable attributes of an offer, in the units the response uses.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub category: u32,
    pub price: f64,
    pub ref_price: f64,
    pub discount: f64,
    /// Share of the sale still to run, in (0, 1].
    pub time_left: f64,
    /// Hour of day, fractional.
    pub hour: f64,
}

/// The true purchase logit of `user` for `offer`.
pub fn purchase_logit(user: &UserTruth, offer: &Offer) -> f64 {
    let t = &TYPES[user.type_id];
    let fav = if user.favourites.contains(&offer.category) {
        AFFINITY
    } else {
        0.0
    };
    let hour_term =
        HOUR_AMPLITUDE * (2.0 * std::f64::consts::PI * (offer.hour - t.peak_hour) / 24.0).cos();
    t.b0 + user.bias + fav - t.rho * (offer.price / offer.ref_price).ln()
        + user.beta * offer.discount
        + t.kappa * (1.0 - offer.time_left)
        + hour_term
}

/// The true purchase probability of `user` for `offer`.
pub fn purchase_probability(user: &UserTruth, offer: &Offer) -> f64 {
    sigmoid(purchase_logit(user, offer))
}

/// Numerically stable logistic function.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_one_and_mixes_are_distributions() {
        let total: f64 = TYPES.iter().map(|t| t.share).sum();
        assert!((total - 1.0).abs() < 1e-12);
        for t in TYPES {
            let s: f64 = t.event_mix.iter().sum();
            assert!((s - 1.0).abs() < 1e-9, "{} mix sums to {s}", t.name);
        }
    }

    #[test]
    fn probability_increases_in_discount_for_every_type() {
        for (type_id, params) in TYPES.iter().enumerate() {
            let user = UserTruth {
                type_id,
                bias: 0.0,
                beta: params.beta,
                favourites: vec![1],
            };
            let mut last = 0.0;
            for d in DISCOUNT_LEVELS {
                let p = purchase_probability(
                    &user,
                    &Offer {
                        category: 1,
                        price: 10.0,
                        ref_price: 10.0,
                        discount: d,
                        time_left: 0.5,
                        hour: 12.0,
                    },
                );
                assert!(p > last, "type {type_id} not increasing at {d}");
                last = p;
            }
        }
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }
}
