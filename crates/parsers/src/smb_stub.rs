//! Temporary stand-in with the agreed API (replaced by the real parser).
#[derive(Clone, Copy, Debug)]
pub struct SmbLimits {
    pub max_files: usize,
    pub max_pending: usize,
    pub max_name: usize,
}
impl Default for SmbLimits {
    fn default() -> Self {
        SmbLimits {
            max_files: 1024,
            max_pending: 256,
            max_name: 512,
        }
    }
}
#[derive(Default, Clone, Debug)]
pub struct SmbStats {
    pub messages: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub encrypted_bytes: [u64; 2],
    pub resyncs: u64,
    pub malformed: u64,
    pub limit_hits: u64,
    pub dialect: Option<u16>,
}
#[derive(Clone, Debug, Default)]
pub struct Ntlm {
    pub user: String,
    pub domain: String,
    pub host: String,
}
#[derive(Clone, Debug, Default)]
pub struct SmbTx {
    pub command: &'static str,
    pub status: Option<&'static str>,
    pub status_code: Option<u32>,
    pub dialect: Option<&'static str>,
    pub session_id: u64,
    pub tree_id: u32,
    pub share: Option<String>,
    pub filename: Option<String>,
    pub fuid: Option<String>,
    pub disposition: Option<&'static str>,
    pub size: Option<u64>,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub ntlmssp: Option<Ntlm>,
    pub encrypted_bytes: [u64; 2],
}
pub struct SmbConn {
    stats: SmbStats,
}
impl SmbConn {
    pub fn new(_l: SmbLimits) -> Self {
        SmbConn {
            stats: SmbStats::default(),
        }
    }
    pub fn feed(&mut self, _to_server: bool, data: &[u8], _out: &mut Vec<SmbTx>) -> usize {
        data.len()
    }
    pub fn skippable(&self, _to_server: bool) -> u64 {
        0
    }
    pub fn skipped(&mut self, _to_server: bool, _n: u64) {}
    pub fn gap(&mut self, _to_server: bool) {}
    pub fn finish(&mut self, _out: &mut Vec<SmbTx>) {}
    pub fn stats(&self) -> &SmbStats {
        &self.stats
    }
}
