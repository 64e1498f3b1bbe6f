//! One `SdkConfig`, built in one place, and the clients derived from it; the retry and poll
//! helpers every resource uses.
//!
//! Retries: the SDK's standard mode (exponential backoff with jitter, at most 20 s between
//! attempts; throttling, 5xx and connection errors retried) with [`MAX_ATTEMPTS`] attempts
//! for every call. The default of 3 gives up too early for a provisioner: a stack left half
//! built costs more than a minute of waiting. The EC2 creates run with SDK retries off
//! (`CreateVpc`, `CreateSubnet`, `CreateSecurityGroup` take no client token, so a blind retry
//! after a lost response makes a second resource; route tables, associations and the
//! endpoint are treated the same way because emulators ignore client tokens): they look for
//! what an ambiguous attempt made before trying again (`resources::create_reconciled`).
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region as SdkRegion, SdkConfig};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep};

use crate::config::Region;
use crate::error::{AwsError, Call, Kind};

/// Attempts per call, first included.
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// Where and as whom to call AWS.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) region: Region,
    pub(crate) profile: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    /// At most this many AWS calls in flight at once (`--max-concurrency`).
    pub(crate) max_calls: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct Clients {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) kms: aws_sdk_kms::Client,
    pub(crate) lambda: aws_sdk_lambda::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) sts: aws_sdk_sts::Client,
}

/// The region from the standard chain (environment, profile), or `None`.
pub(crate) async fn chain_region(profile: Option<&str>) -> Option<String> {
    let mut chain = aws_config::default_provider::region::DefaultRegionChain::builder();
    if let Some(p) = profile {
        chain = chain.profile_name(p);
    }
    RegionProviderChain::first_try(chain.build())
        .region()
        .await
        .map(|r| r.to_string())
}

pub(crate) async fn sdk_config(conn: &Connection) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(SdkRegion::new(conn.region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(p) = &conn.profile {
        loader = loader.profile_name(p);
    }
    if let Some(url) = &conn.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(n) = conn.max_calls {
        loader = loader.http_client(Limited {
            inner: https_client(),
            permits: Arc::new(Semaphore::new(n)),
        });
    }
    loader.load().await
}

/// The SDK's default HTTPS client (rustls with aws-lc, proxy settings from the environment),
/// built the way `aws-smithy-runtime` builds it, so that it can be wrapped.
fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        conn.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            conn.set_sleep_impl(c.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// An HTTP client that lets at most N requests be in flight: `--max-concurrency` bounds AWS
/// calls, not only steps (a step may make several calls at once). A permit is held for one
/// attempt; the SDK's backoff between attempts holds none.
#[derive(Debug)]
struct Limited {
    inner: SharedHttpClient,
    permits: Arc<Semaphore>,
}

impl HttpClient for Limited {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LimitedConnector {
            inner: self.inner.http_connector(settings, components),
            permits: self.permits.clone(),
        })
    }
}

#[derive(Debug)]
struct LimitedConnector {
    inner: SharedHttpConnector,
    permits: Arc<Semaphore>,
}

impl HttpConnector for LimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, permits) = (self.inner.clone(), self.permits.clone());
        HttpConnectorFuture::new(async move {
            #[expect(
                clippy::expect_used,
                reason = "the semaphore lives in the connector and is never closed"
            )]
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            inner.call(request).await
        })
    }
}

impl Clients {
    pub(crate) async fn connect(conn: &Connection) -> Clients {
        let sdk = sdk_config(conn).await;
        Clients {
            ec2: aws_sdk_ec2::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            kms: aws_sdk_kms::Client::new(&sdk),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            s3: s3_from(&sdk, conn),
            sts: aws_sdk_sts::Client::new(&sdk),
        }
    }

    /// The same clients, calling another region (`list --all-regions`).
    pub(crate) fn in_region(&self, region: &str) -> Clients {
        let r = SdkRegion::new(region.to_string());
        Clients {
            ec2: aws_sdk_ec2::Client::from_conf(
                self.ec2.config().to_builder().region(r.clone()).build(),
            ),
            iam: self.iam.clone(),
            kms: aws_sdk_kms::Client::from_conf(
                self.kms.config().to_builder().region(r.clone()).build(),
            ),
            lambda: aws_sdk_lambda::Client::from_conf(
                self.lambda.config().to_builder().region(r.clone()).build(),
            ),
            s3: aws_sdk_s3::Client::from_conf(
                self.s3.config().to_builder().region(r.clone()).build(),
            ),
            sts: self.sts.clone(),
        }
    }

    /// The caller's account and ARN.
    pub(crate) async fn identity(&self) -> anyhow::Result<(String, String)> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .call("GetCallerIdentity", "the caller's credentials")
            .context("cannot tell which AWS account the credentials belong to")?;
        let account = out.account().unwrap_or_default().to_string();
        let arn = out.arn().unwrap_or_default().to_string();
        Ok((account, arn))
    }
}

/// An S3 client alone (for a state bucket, in its own region).
pub(crate) async fn s3_client(conn: &Connection) -> aws_sdk_s3::Client {
    s3_from(&sdk_config(conn).await, conn)
}

/// Emulators serve S3 at one host; virtual-hosted names (`bucket.127.0.0.1`) don't resolve.
fn s3_from(sdk: &SdkConfig, conn: &Connection) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(conn.endpoint_url.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// Backoff: start short (the emulator answers at once), grow by half, cap at 15 s so a
/// released ENI or an available endpoint is noticed within one interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) first: Duration,
    pub(crate) cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(500),
            cap: Duration::from_secs(15),
        }
    }
}

impl Backoff {
    pub(crate) fn next(&self, d: Duration) -> Duration {
        (d + d / 2).min(self.cap)
    }
}

/// Runs `op` again while it fails with an error `retry_on` accepts, for at most `budget`.
/// The one retry helper: IAM propagation on `CreateFunction`, `DependencyViolation` on deletes.
pub(crate) async fn retry<T, F, Fut>(
    budget: Duration,
    backoff: Backoff,
    retry_on: impl Fn(&AwsError) -> bool,
    mut on_retry: impl FnMut(&AwsError, Duration),
    mut op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let deadline = Instant::now() + budget;
    let mut delay = backoff.first;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if retry_on(&e) && Instant::now() + delay <= deadline => {
                on_retry(&e, delay);
                sleep(delay).await;
                delay = backoff.next(delay);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls `check` until it yields `Some`, first at once, then with backoff, for at most
/// `budget`. `Ok(None)` when the budget ran out.
pub(crate) async fn poll<T, F, Fut>(
    budget: Duration,
    backoff: Backoff,
    mut check: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + budget;
    let mut delay = backoff.first;
    loop {
        if let Some(v) = check().await? {
            return Ok(Some(v));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        sleep(delay.min(deadline - now)).await;
        delay = backoff.next(delay);
    }
}

/// Retry predicate for deletes that race with AWS releasing a dependency.
pub(crate) fn in_use(e: &AwsError) -> bool {
    e.is(Kind::InUse) || e.is(Kind::Throttled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn err(kind: Kind) -> AwsError {
        AwsError::new("CreateFunction", "f", kind, "x")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_the_kind_asked_for_and_only_within_budget() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let r: Result<(), _> = retry(
            Duration::from_secs(120),
            Backoff::default(),
            |e| e.is(Kind::Propagating),
            |_, _| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(err(Kind::Propagating))
            },
        )
        .await;
        assert!(r.is_err());
        assert!(start.elapsed() <= Duration::from_secs(120));
        assert!(calls.load(Ordering::SeqCst) > 5, "it retried");

        calls.store(0, Ordering::SeqCst);
        let r: Result<(), _> = retry(
            Duration::from_secs(120),
            Backoff::default(),
            |e| e.is(Kind::Propagating),
            |_, _| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(err(Kind::Other))
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "other errors are not retried"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn poll_checks_at_once_then_backs_off_to_the_cap() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let got = poll(Duration::from_secs(600), Backoff::default(), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok((n == 0).then_some(n))
        })
        .await
        .unwrap();
        assert_eq!(got, Some(0));
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first check is immediate"
        );

        let start = Instant::now();
        let got: Option<()> = poll(Duration::from_secs(60), Backoff::default(), || async {
            Ok(None)
        })
        .await
        .unwrap();
        assert!(got.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        assert_eq!(
            Backoff::default().next(Duration::from_secs(14)),
            Duration::from_secs(15)
        );
    }
}
