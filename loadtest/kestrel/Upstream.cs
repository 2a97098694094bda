// Upstream - the pooled HTTP client that /cache misses and /upstream use.
//
// One HttpClient over one SocketsHttpHandler for the process, as .NET's
// guidance says (a client per request exhausts sockets; the handler pools
// keep-alive connections, up to upstream.pool_size, like hotpath's pool).
// Every request is a Task<Answer>, in every mode: remote work is genuinely
// asynchronous, and a task is what many waiters (coalesced cache misses) can
// share, which is why hotpath's upstream client returns hp_task too.
// Failures become hotpath's answers: 504 for a timeout, 502 for the rest;
// the status and Content-Type of an upstream answer pass through.
using System.Net;
using System.Net.Http.Headers;

namespace HotpathKestrel;

public sealed class Upstream : IDisposable
{
    private readonly HttpClient _client;
    private long _requests, _responses, _timeouts, _failures;

    public Upstream(Config cfg)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            MaxConnectionsPerServer = cfg.UpstreamPoolSize,
            ConnectTimeout = TimeSpan.FromMilliseconds(cfg.UpstreamConnectTimeoutMs),
            // 60 s, as hotpath's upstream.idle_timeout_ms.
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            // No traceparent header and no Activity per request: hotpath's
            // client sends neither.
            ActivityHeadersPropagator = null,
        };
        _client = new HttpClient(handler)
        {
            BaseAddress = new Uri($"http://{(cfg.UpstreamHost.Contains(':') ? $"[{cfg.UpstreamHost}]" : cfg.UpstreamHost)}:{cfg.UpstreamPort}"),
            Timeout = TimeSpan.FromMilliseconds(cfg.UpstreamResponseTimeoutMs),
            MaxResponseContentBufferSize = cfg.UpstreamMaxResponseBytes,
        };
    }

    public void Dispose() => _client.Dispose();

    /// <summary>GET path from the upstream; never throws: a failure is an error answer.</summary>
    public async Task<Answer> GetAsync(string path)
    {
        Interlocked.Increment(ref _requests);
        try
        {
            using HttpResponseMessage resp = await _client.GetAsync(path, HttpCompletionOption.ResponseContentRead)
                                                          .ConfigureAwait(false);
            byte[] body = await resp.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
            Interlocked.Increment(ref _responses);
            MediaTypeHeaderValue? ct = resp.Content.Headers.ContentType;
            return new Answer((int)resp.StatusCode, ct?.ToString() ?? "application/octet-stream", body);
        }
        catch (TaskCanceledException)
        {
            // HttpClient.Timeout surfaces as a cancellation with no token of ours.
            Interlocked.Increment(ref _timeouts);
            return Answer.UpstreamTimedOut;
        }
        catch (Exception e) when (e is HttpRequestException or IOException or InvalidOperationException)
        {
            Interlocked.Increment(ref _failures);
            return Answer.UpstreamFailed;
        }
    }

    public (long Requests, long Responses, long Timeouts, long Failures) Counters =>
        (Interlocked.Read(ref _requests), Interlocked.Read(ref _responses),
         Interlocked.Read(ref _timeouts), Interlocked.Read(ref _failures));
}
