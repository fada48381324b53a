import Metrics
import Prometheus

/// The process's metrics (swift-metrics, recorded by the libraries) kept in one Prometheus registry,
/// which `GET /metrics` prints.
enum PrometheusMetrics {
    /// Bootstraps swift-metrics once per process; then the text of every metric, in Prometheus's format.
    static let text: @Sendable () -> String = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Token gaps and exchanges take milliseconds, whole requests seconds to minutes.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
        ]
        MetricsSystem.bootstrap(factory)
        return { registry.emitToString() }
    }()
}
