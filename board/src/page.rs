//! The board's HTML: askama templates (`board/templates/`) over the view models of
//! [`crate::view`]. Everything escapes by default; no template is given raw HTML.

use askama::Template;

use crate::view::{FeedItem, SeriesView, TrailItem, UnplacedRow, WardView};

/// The state part of the board: what `/partials/board` returns and `/` embeds.
#[derive(Template)]
#[template(path = "board_main.html")]
pub struct BoardMain {
    pub event_id: String,
    pub rendered: String,
    pub inpatients: usize,
    pub active_alerts: usize,
    pub wards: Vec<WardView>,
    pub feed: Vec<FeedItem>,
    pub unplaced: Vec<UnplacedRow>,
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
