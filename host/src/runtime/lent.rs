//! What the host lent a policy during one `get-node-resources` call, so its
//! answer can be checked against it. The sandbox limits what a policy can
//! touch, not what it says: a policy could add a flag to the document it
//! probed, or call a fresh probe a week-old cache entry. The document it
//! answers with must be byte-identical to one it was lent, its source must
//! say how that document reached it, and its age must be the age it came
//! with. Only its choice among them is the policy's own.

use crate::api::cpu_summary::CpuSummary;
use crate::model::{NodeResources, Source};

/// How a document reached the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lending {
    /// `probe-local`, now.
    Probe,
    /// `fetch-remote` or a modified `fetch-remote-if-changed`, now.
    Fetch,
    /// `cache-read`: the entry as stored, with its age and validator.
    Cache { age_ms: u64, validator: Option<String> },
}

#[derive(Debug)]
struct LentDocument {
    body: String,
    how: Lending,
    /// Its CPU summary, when the host has one (stored beside a cache entry,
    /// made when a fetch was checked, or when it was written): an answer
    /// with this very document spares the host a parse.
    summary: Option<CpuSummary>,
}

#[derive(Debug, Default)]
pub struct Lent {
    /// Each document, with how it came: a copy, compared byte for byte
    /// (a copy and a compare cost a few microseconds for a usual document;
    /// hashing both cost 12 µs a node, half the policy's whole overhead).
    documents: Vec<LentDocument>,
    /// Validators the node confirmed during the call: a 304 for one, or
    /// this machine's fingerprint equal to it.
    confirmed: Vec<String>,
    /// A `cache-restamp` succeeded: the entry is now 0 ms old.
    restamped: bool,
}

impl Lent {
    pub fn probed(&mut self, document: &str, summary: Option<CpuSummary>) {
        self.lend(document, Lending::Probe, summary);
    }

    pub fn fetched(&mut self, document: &str, summary: Option<CpuSummary>) {
        self.lend(document, Lending::Fetch, summary);
    }

    pub fn read_from_cache(
        &mut self,
        document: &str,
        age_ms: u64,
        validator: Option<&str>,
        summary: CpuSummary,
    ) {
        let how = Lending::Cache {
            age_ms,
            validator: validator.map(str::to_string),
        };
        self.lend(document, how, Some(summary));
    }

    fn lend(&mut self, document: &str, how: Lending, summary: Option<CpuSummary>) {
        self.documents.push(LentDocument {
            body: document.to_string(),
            how,
            summary,
        });
    }

    /// The summary the host has of `document`, if it was lent.
    pub fn summary_of(&self, document: &str) -> Option<CpuSummary> {
        self.documents
            .iter()
            .filter(|lent| lent.body == document)
            .find_map(|lent| lent.summary.clone())
    }

    /// Keeps `summary` beside the lent documents equal to `document` (the
    /// summary a cache write made of it).
    pub fn note_summary(&mut self, document: &str, summary: &CpuSummary) {
        for lent in self.documents.iter_mut().filter(|lent| lent.body == document) {
            lent.summary.get_or_insert_with(|| summary.clone());
        }
    }

    /// The node said its hardware still matches `validator`.
    pub fn confirmed(&mut self, validator: &str) {
        self.confirmed.push(validator.to_string());
    }

    pub fn restamped(&mut self) {
        self.restamped = true;
    }

    /// Whether `answer` is one of the documents lent, with the source and
    /// age of how it came; otherwise what is wrong with it.
    pub fn check(&self, answer: &NodeResources) -> Result<(), String> {
        let ways: Vec<&Lending> = self
            .documents
            .iter()
            .filter(|lent| lent.body == answer.document)
            .map(|lent| &lent.how)
            .collect();
        if ways.is_empty() {
            return Err(format!(
                "it answered with a document it was not lent in this call ({} bytes; only the probe, \
                 a fetch or the cache entry it was given may be answered, byte for byte)",
                answer.document.len()
            ));
        }
        if ways
            .iter()
            .any(|how| self.vouches(how, answer.source, answer.age_ms))
        {
            return Ok(());
        }
        Err(format!(
            "it called the document {} with an age of {} ms, but it came {}",
            source_name(answer.source),
            answer.age_ms,
            ways.iter()
                .map(|how| describe(how))
                .collect::<Vec<_>>()
                .join(", or ")
        ))
    }

    /// Whether a document lent `how` may be answered as `source`, `age_ms` old.
    fn vouches(&self, how: &Lending, source: Source, age_ms: u64) -> bool {
        match (how, source) {
            (Lending::Probe, Source::Local) | (Lending::Fetch, Source::Remote) => age_ms == 0,
            // Contract 0.1 has no `revalidated`: a confirmed, restamped
            // entry is `cache` aged 0 there.
            (Lending::Cache { age_ms: lent_age, .. }, Source::Cache) => {
                age_ms == *lent_age || (age_ms == 0 && self.restamped)
            }
            (Lending::Cache { age_ms: lent_age, .. }, Source::Stale) => age_ms == *lent_age,
            (Lending::Cache { validator, .. }, Source::Revalidated) => {
                age_ms == 0
                    && validator
                        .as_ref()
                        .is_some_and(|validator| self.confirmed.contains(validator))
            }
            _ => false,
        }
    }
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Cache => "`cache`",
        Source::Revalidated => "`revalidated`",
        Source::Local => "`local`",
        Source::Remote => "`remote`",
        Source::Stale => "`stale`",
    }
}

fn describe(how: &Lending) -> String {
    match how {
        Lending::Probe => "from probe-local now (`local`, age 0)".into(),
        Lending::Fetch => "from a fetch now (`remote`, age 0)".into(),
        Lending::Cache { age_ms, validator } => format!(
            "from the cache, {age_ms} ms old (`cache` or `stale` at that age{})",
            match validator {
                Some(_) => ", `revalidated` at 0 once the node confirms its validator",
                None => "",
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> CpuSummary {
        CpuSummary {
            architecture: "x86_64".into(),
            core_groups: vec![crate::api::cpu_summary::CoreGroup::new(1, &["fpu"])],
            hypervisor: None,
            vendor: None,
            physical_bits: None,
        }
    }

    /// A summary serves only the very document it came with.
    #[test]
    fn a_summary_is_kept_for_its_own_document_only() {
        let mut lent = Lent::default();
        lent.probed("{\"a\":1}", None);
        assert_eq!(lent.summary_of("{\"a\":1}"), None);
        lent.note_summary("{\"a\":1}", &summary());
        lent.read_from_cache("{\"b\":1}", 0, None, summary());
        assert_eq!(lent.summary_of("{\"a\":1}"), Some(summary()));
        assert_eq!(lent.summary_of("{\"a\":2}"), None, "another document");
        assert_eq!(lent.summary_of("{\"b\":1}"), Some(summary()));
    }

    fn answer(document: &str, source: Source, age_ms: u64) -> NodeResources {
        NodeResources {
            document: document.into(),
            source,
            age_ms,
            refresh_error: None,
            summary: None,
        }
    }

    #[test]
    fn an_answer_must_be_a_lent_document_with_its_own_source_and_age() {
        let mut lent = Lent::default();
        lent.probed("{\"probed\":1}", None);
        lent.read_from_cache("{\"cached\":1}", 5_000, Some("v1"), summary());
        assert_eq!(lent.check(&answer("{\"probed\":1}", Source::Local, 0)), Ok(()));
        assert_eq!(
            lent.check(&answer("{\"cached\":1}", Source::Cache, 5_000)),
            Ok(())
        );
        assert_eq!(
            lent.check(&answer("{\"cached\":1}", Source::Stale, 5_000)),
            Ok(())
        );
        let edited = lent.check(&answer("{\"probed\":1,\"fake_flag\":1}", Source::Local, 0));
        assert!(edited.unwrap_err().contains("not lent"));
        let mislabelled = lent.check(&answer("{\"probed\":1}", Source::Cache, 999_999_000));
        assert!(mislabelled.unwrap_err().contains("from probe-local now"));
        let younger = lent.check(&answer("{\"cached\":1}", Source::Cache, 0));
        assert!(younger.is_err(), "an entry made younger without a restamp");
        let unconfirmed = lent.check(&answer("{\"cached\":1}", Source::Revalidated, 0));
        assert!(unconfirmed.is_err(), "revalidated without the node confirming");
        lent.confirmed("v1");
        assert_eq!(
            lent.check(&answer("{\"cached\":1}", Source::Revalidated, 0)),
            Ok(())
        );
        lent.restamped();
        assert_eq!(lent.check(&answer("{\"cached\":1}", Source::Cache, 0)), Ok(()));
        assert!(lent.check(&answer("{\"cached\":1}", Source::Remote, 0)).is_err());
    }
}
