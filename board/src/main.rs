//! The ward board alone (its page, API and event stream), for a container of its own: Knative
//! runs as many as the load needs, and each serves every event (they all read the one log).
fn main() -> std::process::ExitCode {
    wardwatch_adapters::launch::main("board", &[], |w| {
        let board =
            wardwatch_board::Board::new(w.records(), w.config.board_token.clone()).with_rules(w.config.rules.clone());
        w.app().endpoint("/", board)
    })
}
