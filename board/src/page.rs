//! The board's HTML: askama templates (`board/templates/`) over the view models of
//! [`crate::view`]. Everything escapes by default; no template is given raw HTML.

use askama::Template;

use crate::view::{AuditRow, FeedItem, RrtView, SeriesView, TrailItem, UnplacedRow, WardView};

/// The state part of the board: what `/partials/board` returns and `/` embeds.
#[derive(Template)]
#[template(path = "board_main.html")]
pub struct BoardMain {
    pub event_id: String,
    pub rendered: String,
    pub inpatients: usize,
    /// Alerts nobody has acknowledged yet (active or escalated) in the feed.
    pub to_acknowledge: usize,
    pub wards: Vec<WardView>,
    pub feed: Vec<FeedItem>,
    /// On no ward with alerts nobody has acknowledged: discharged (needs follow-up) …
    pub discharged: Vec<UnplacedRow>,
    /// … and never admitted (results before their admission, outpatients).
    pub not_admitted: Vec<UnplacedRow>,
}

/// The whole board page: the layout around a [`BoardMain`].
#[derive(Template)]
#[template(path = "board.html")]
pub struct BoardPage {
    pub user: Option<String>,
    pub csrf: Option<String>,
    pub open_access: bool,
    pub main: BoardMain,
}

#[derive(Template)]
#[template(path = "patient_main.html")]
pub struct PatientMain {
    pub event_id: String,
    pub rendered: String,
    pub id: String,
    pub name: String,
    pub mrn: String,
    pub gender: String,
    pub born: String,
    pub place: String,
    pub series: Vec<SeriesView>,
    pub trail: Vec<TrailItem>,
    /// The alert audit trail, newest first.
    pub audit: Vec<AuditRow>,
    /// How many audit entries a record keeps.
    pub audit_kept: usize,
    pub rrt: RrtView,
}

/// One patient's page: the layout around a [`PatientMain`].
#[derive(Template)]
#[template(path = "patient.html")]
pub struct PatientPage {
    pub user: Option<String>,
    pub csrf: Option<String>,
    pub open_access: bool,
    pub main: PatientMain,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignIn {
    pub user: Option<String>,
    pub csrf: Option<String>,
    pub open_access: bool,
    pub error: Option<String>,
}
