//! The web side: channel boards behind signed links, and the local
//! playground (a channel of its own, platform "web").

pub mod board;
pub mod html;
pub mod link;
pub mod playground;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use wordup_runtime::secret::Secret;

/// The playground's listener, from the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct PlaygroundSettings {
    /// Serve the playground on this port (unset: no playground). It listens
    /// on 127.0.0.1 only, unless WORDUP_PLAYGROUND_TOKEN is set.
    #[arg(long, env = "WORDUP_PLAYGROUND_PORT")]
    pub playground_port: Option<u16>,
    /// Required (as `?token=`, then kept in a cookie) on every playground
    /// request; with it the playground listens on every interface.
    #[arg(long, env = "WORDUP_PLAYGROUND_TOKEN", default_value = "")]
    pub playground_token: Secret,
}

impl PlaygroundSettings {
    /// Where the playground listens and the token it asks for, if it is on.
    pub fn listener(&self) -> Option<(SocketAddr, Option<Secret>)> {
        let port = self.playground_port?;
        Some(listen_on(port, &self.playground_token))
    }
}

/// Loopback without a token; every interface with one.
pub fn listen_on(port: u16, token: &Secret) -> (SocketAddr, Option<Secret>) {
    if token.expose().is_empty() {
        (SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port), None)
    } else {
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            Some(token.clone()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_playground_is_local_unless_a_token_guards_it() {
        let (addr, token) = listen_on(8090, &Secret::new(""));
        assert_eq!(
            (addr.to_string(), token),
            ("127.0.0.1:8090".to_owned(), None)
        );
        let (addr, token) = listen_on(8090, &Secret::new("t0k"));
        assert_eq!(addr.to_string(), "0.0.0.0:8090");
        assert_eq!(token.unwrap().expose(), "t0k");
    }
}
