//! `demo:`: the bundled clip ([`recorder::DemoSource`]) paced in real time with tokio sleeps.

use recorder::DemoSource;
use recorder::MediaUnit;
use tokio::time::Instant;

use crate::Error;
use crate::camera::{Connector, MediaSession, StreamParams};

/// Opens demo sessions.
#[derive(Debug, Default)]
pub struct DemoConnector;

/// A demo session: the clip, looping, each unit released at its due time.
#[derive(Debug)]
pub struct DemoSession {
    source: DemoSource,
    start: Instant,
    params: StreamParams,
    /// The next unit and its due time (kept across cancellation).
    pending: Option<(std::time::Duration, MediaUnit)>,
}

impl Connector for DemoConnector {
    type Session = DemoSession;

    fn camera(&self) -> String {
        "demo:".into()
    }

    async fn connect(&mut self) -> Result<DemoSession, Error> {
        let source = DemoSource::bundled().map_err(|e| Error::Stream {
            camera: "demo:".into(),
            detail: e.to_string(),
        })?;
        let params = StreamParams {
            parameter_sets: None,
            audio: source.audio_config().cloned(),
            ignored_audio: None,
            transport: "bundled demo clip".into(),
        };
        Ok(DemoSession {
            source,
            start: Instant::now(),
            params,
            pending: None,
        })
    }
}

impl MediaSession for DemoSession {
    fn params(&self) -> &StreamParams {
        &self.params
    }

    async fn next_unit(&mut self) -> Result<Option<MediaUnit>, Error> {
        let (due, _) = self.pending.get_or_insert_with(|| self.source.next_unit());
        tokio::time::sleep_until(self.start + *due).await;
        Ok(self.pending.take().map(|(_, unit)| unit))
    }
}
