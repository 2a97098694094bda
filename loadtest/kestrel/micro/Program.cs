// micro - what one request's chain costs when every layer completes
// synchronously, measured by BenchmarkDotNet with its MemoryDiagnoser.
//
//   Shape    hotpath's 4 layers (3 middleware, each an async method that
//            awaits the next and returns its result, and a handler that
//            returns an Answer, a reference): nothing but the async
//            machinery. ValueTask<T> and the idiomatic Task allocate nothing;
//            Task<T> allocates one Task<Answer> per layer.
//   Twin*    the twin's own dispatcher and chain for GET /plaintext over a
//            reused DefaultHttpContext whose body writer discards: everything
//            the twin runs per request but Kestrel's I/O and parsing.
//   CacheHit the twin's cache hit beside HybridCache's, the evidence for
//            not using HybridCache in the twin (README.md).
//
// Before the benchmarks, Facts prints what HybridCache does that matters for
// that decision (does a hit complete synchronously? how many factories for
// concurrent misses? can a caller tell hit, miss and coalesced apart?).
using System.Buffers;
using System.ComponentModel;
using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using HotpathKestrel;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Caching.Hybrid;
using Microsoft.Extensions.DependencyInjection;

namespace Micro;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        await Facts.PrintAsync();
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}

/// <summary>The chain's shape alone: 3 middleware + handler, synchronous.</summary>
[MemoryDiagnoser]
public class Shape
{
    private static readonly Answer Result = Answer.Plaintext;
    private int _counter;

    [Benchmark(Baseline = true, Description = "ValueTask<T> chain")]
    public Answer ValueTaskChain() => V1().GetAwaiter().GetResult();

    [Benchmark(Description = "Task<T> chain")]
    public Answer TaskChain() => T1().GetAwaiter().GetResult();

    [Benchmark(Description = "idiomatic Task chain")]
    public void IdiomaticChain() => I1().GetAwaiter().GetResult();

    private async ValueTask<Answer> V1() { Answer a = await V2(); _counter++; return a; }
    private async ValueTask<Answer> V2() { Answer a = await V3(); _counter++; return a; }
    private async ValueTask<Answer> V3() { Answer a = await VH(); _counter++; return a; }
    private ValueTask<Answer> VH() => new(Result);

    private async Task<Answer> T1() { Answer a = await T2(); _counter++; return a; }
    private async Task<Answer> T2() { Answer a = await T3(); _counter++; return a; }
    private async Task<Answer> T3() { Answer a = await TH(); _counter++; return a; }
    private static Task<Answer> TH() => Task.FromResult(Result);

    private async Task I1() { await I2(); _counter++; }
    private async Task I2() { await I3(); _counter++; }
    private async Task I3() { await IH(); _counter++; }
    private Task IH() { _counter++; return Task.CompletedTask; }
}

/// <summary>The twin's own code for GET /plaintext, per mode.</summary>
[MemoryDiagnoser]
public class Twin
{
    private HotpathKestrel.Twin _twin = null!;
    private DefaultHttpContext _ctx = null!;

    [Params("valuetask", "task", "aspnet")]
    public string Mode { get; set; } = "valuetask";

    [GlobalSetup]
    public void Setup()
    {
        Modes.TryParse(Mode, out Mode m);
        _twin = new HotpathKestrel.Twin(new Config(), null, m);
        // aspnet mode's pipeline, as Program.cs builds it.
        var services = new ServiceCollection().BuildServiceProvider();
        var app = new ApplicationBuilder(services);
        app.UseMiddleware<ServerHeadersMiddleware>();
        app.UseMiddleware<RequestIdMiddleware>();
        app.UseMiddleware<MetricsMiddleware>(_twin.Stats);
        app.Run(new AspNetHandler(_twin).InvokeAsync);
        _twin.SetAspNetPipeline(app.Build());
        _ctx = new DefaultHttpContext();
        _ctx.Request.Method = "GET";
        _ctx.Request.Path = "/plaintext";
        _ctx.Features.Set<IHttpResponseBodyFeature>(new DiscardBody());
    }

    [GlobalCleanup]
    public void Cleanup() => _twin.Dispose();

    [Benchmark(Description = "twin GET /plaintext")]
    public void Plaintext() => _twin.Invoke(_ctx).GetAwaiter().GetResult();

    /// <summary>A response body that keeps nothing: one buffer, rewritten.</summary>
    private sealed class DiscardBody : PipeWriter, IHttpResponseBodyFeature
    {
        private readonly byte[] _buf = new byte[4096];
        public Stream Stream => Stream.Null;
        public PipeWriter Writer => this;
        public void DisableBuffering() { }
        public Task StartAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;
        public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) =>
            Task.CompletedTask;
        public Task CompleteAsync() => Task.CompletedTask;
        public override void Advance(int bytes) { }
        public override Memory<byte> GetMemory(int sizeHint = 0) => _buf;
        public override Span<byte> GetSpan(int sizeHint = 0) => _buf;
        public override void CancelPendingFlush() { }
        public override void Complete(Exception? exception = null) { }
        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => default;
    }
}

/// <summary>A cache hit: the twin's cache (key as a span of the path) and HybridCache's.</summary>
[MemoryDiagnoser]
public class CacheHit
{
    private HotpathKestrel.Cache _twinCache = null!;
    private HybridCache _hybrid = null!;
    private Upstream _upstream = null!;
    private const string Path = "/cache/hot0";

    [GlobalSetup]
    public void Setup()
    {
        _upstream = new Upstream(new Config());
        _twinCache = Facts.PrimedTwinCache(_upstream, "hot0");
        _hybrid = Facts.NewHybridCache();
        _hybrid.SetAsync("hot0", new Cached(Answer.Plaintext)).AsTask().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup() => _upstream.Dispose();

    [Benchmark(Baseline = true, Description = "twin cache hit (ValueTask)")]
    public Answer Twin() => _twinCache.Get(Path.AsSpan(7), out _).GetAwaiter().GetResult();

    [Benchmark(Description = "twin cache hit (Task)")]
    public Answer TwinTask() => _twinCache.GetTask(Path.AsSpan(7), out _).GetAwaiter().GetResult();

    [Benchmark(Description = "HybridCache hit, key from the path")]
    public Answer Hybrid() =>
        _hybrid.GetOrCreateAsync(Path.Substring(7), Facts.NeverCalled).GetAwaiter().GetResult().Answer;
}

/// <summary>HybridCache's value: sealed and marked immutable, so that a hit
/// returns the stored instance instead of a deserialized copy.</summary>
[ImmutableObject(true)]
public sealed record Cached(Answer Answer);

public static class Facts
{
    public static readonly Func<CancellationToken, ValueTask<Cached>> NeverCalled =
        _ => throw new InvalidOperationException("a hit must not call the factory");

    public static HybridCache NewHybridCache()
    {
        var services = new ServiceCollection();
        services.AddHybridCache();
        return services.BuildServiceProvider().GetRequiredService<HybridCache>();
    }

    /// <summary>A twin cache with key filled, by a fill against a stand-in upstream
    /// that answers at once (no socket: the stub's answer is not what is measured).</summary>
    public static HotpathKestrel.Cache PrimedTwinCache(Upstream upstream, string key)
    {
        var cache = new HotpathKestrel.Cache(upstream, ttlMs: 3_600_000, maxBytes: 1 << 20);
        cache.Prime(key, Answer.Plaintext);
        return cache;
    }

    public static async Task PrintAsync()
    {
        HybridCache h = NewHybridCache();
        await h.SetAsync("k", new Cached(Answer.Plaintext));
        ValueTask<Cached> hit = h.GetOrCreateAsync("k", NeverCalled);
        Console.WriteLine($"facts: HybridCache hit completes synchronously: {hit.IsCompletedSuccessfully}");
        Console.WriteLine($"facts: HybridCache hit returns the stored instance: {ReferenceEquals((await hit).Answer, Answer.Plaintext)}");

        int factories = 0;
        var gate = new TaskCompletionSource();
        async ValueTask<Cached> Slow(CancellationToken ct)
        {
            Interlocked.Increment(ref factories);
            await gate.Task;
            return new Cached(Answer.Plaintext);
        }
        var waits = new ValueTask<Cached>[8];
        for (int i = 0; i < waits.Length; i++) waits[i] = h.GetOrCreateAsync("cold", Slow);
        int pending = waits.Count(w => !w.IsCompleted);
        gate.SetResult();
        foreach (ValueTask<Cached> w in waits) await w;
        Console.WriteLine($"facts: HybridCache, {waits.Length} concurrent misses of one key: {factories} factory call(s), " +
                          $"{pending} pending; a caller sees only a pending ValueTask, not whether it is the miss " +
                          "or a coalesced wait (the twin's X-Cache needs that)");
    }
}
