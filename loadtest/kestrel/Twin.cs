// Twin - the one RequestDelegate Kestrel calls, the running mode, the
// synchronous answers (/plaintext, /json, /stats, 404, 405) and the reload.
//
// A request's journey: Kestrel parses it and calls Invoke -> the mode is
// read once (a reload may switch it for the next request, never in the
// middle of one) -> the route is matched -> the mode's chain returns an
// Answer -> Invoke writes it. Kestrel's own contract is a Task: when the
// chain completed synchronously Invoke returns the cached completed task,
// otherwise one async Task that awaits the chain and writes the answer (in
// every mode alike, so the boundary costs the modes the same).
using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace HotpathKestrel;

public sealed class Twin : IDisposable
{
    private readonly TaskChain _task;
    private readonly ValueTaskChain _valueTask;
    private readonly ValueTaskNoPoolChain _valueTaskNoPool;
    private RequestDelegate? _aspnet;
    private readonly Lock _reloadGate = new();
    private volatile Mode _mode;
    private readonly Mode? _modeFlag;
    private readonly string? _configPath;
    private readonly long _started = Stopwatch.GetTimestamp();
    private readonly long _taskBytes = MeasureTaskBytes();
    private int _reloads;

    public Stats Stats { get; }
    public Cache Cache { get; }
    public Upstream Upstream { get; }

    public Twin(Config cfg, string? configPath, Mode? modeFlag)
    {
        _configPath = configPath;
        _modeFlag = modeFlag;
        _mode = modeFlag ?? cfg.Mode;
        Stats = new Stats(_mode);
        Upstream = new Upstream(cfg);
        Cache = new Cache(Upstream, cfg.CacheTtlMs, cfg.CacheMaxBytes);
        _task = new TaskChain(this);
        _valueTask = new ValueTaskChain(this);
        _valueTaskNoPool = new ValueTaskNoPoolChain(this);
    }

    public void Dispose() => Upstream.Dispose();

    public Mode Mode => _mode;

    /// <summary>aspnet mode's pipeline, built by the host with UseMiddleware.</summary>
    public void SetAspNetPipeline(RequestDelegate pipeline) => _aspnet = pipeline;

    public Task Invoke(HttpContext c)
    {
        switch (_mode)
        {
            case Mode.Task:
                return Finish(c, _task.Invoke(c, Routes.Match(c.Request)));
            case Mode.ValueTask:
                return Finish(c, _valueTask.Invoke(c, Routes.Match(c.Request)));
            case Mode.ValueTaskNoPool:
                return Finish(c, _valueTaskNoPool.Invoke(c, Routes.Match(c.Request)));
            default:
                return _aspnet!(c);
        }
    }

    private static Task Finish(HttpContext c, Task<Answer> chain)
    {
        if (!chain.IsCompletedSuccessfully) return WriteAwaited(c, chain);
        chain.Result.Write(c);
        return Task.CompletedTask;
    }

    private static Task Finish(HttpContext c, ValueTask<Answer> chain)
    {
        if (!chain.IsCompletedSuccessfully) return WriteAwaited(c, chain);
        chain.Result.Write(c);
        return Task.CompletedTask;
    }

    private static async Task WriteAwaited(HttpContext c, Task<Answer> chain) => (await chain).Write(c);

    private static async Task WriteAwaited(HttpContext c, ValueTask<Answer> chain) => (await chain).Write(c);

    /// <summary>The synchronous handlers: every route but /cache/ and /upstream/.</summary>
    public Answer SyncAnswer(HttpContext c, Route r) => r switch
    {
        Route.Plaintext => Answer.Plaintext,
        Route.Json => Answer.Json,
        Route.Stats => StatsAnswer(),
        Route.MethodNotAllowed => Answer.MethodNotAllowed,
        _ => Answer.NotFound,
    };

    // --- /stats ---------------------------------------------------------------

    private Answer StatsAnswer()
    {
        long begin = Stats.BeginExclusion();
        var buf = new System.Buffers.ArrayBufferWriter<byte>(4096);
        using (var w = new Utf8JsonWriter(buf, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartObject("server");
            w.WriteString("name", Layers.ServerName);
            w.WriteString("mode", _mode.Name());
            w.WriteNumber("pid", Environment.ProcessId);
            w.WriteNumber("uptime_s", Math.Round(Stopwatch.GetElapsedTime(_started).TotalSeconds, 3));
            w.WriteNumber("reloads", Volatile.Read(ref _reloads));
            w.WriteString("config", _configPath);
            w.WriteEndObject();
            Stats.WriteRuntime(w, _taskBytes);
            Stats.Write(w);
            w.WriteStartObject("cache");
            foreach ((string name, long value) in Cache.Counters()) w.WriteNumber(name, value);
            w.WriteEndObject();
            (long req, long resp, long timeouts, long failures) = Upstream.Counters;
            w.WriteStartObject("upstream");
            w.WriteNumber("requests", req);
            w.WriteNumber("responses", resp);
            w.WriteNumber("timeouts", timeouts);
            w.WriteNumber("failures", failures);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        System.Buffers.BuffersExtensions.Write(buf, "\n"u8);
        var answer = new Answer(200, "application/json", buf.WrittenSpan.ToArray());
        Stats.EndExclusion(begin);
        return answer;
    }

    /// <summary>The size of one Task&lt;Answer&gt; on this runtime, measured (the
    /// second of two, so that nothing first-time is counted).</summary>
    private static long MeasureTaskBytes()
    {
        long n = 0;
        for (int i = 0; i < 2; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            Task<Answer> t = Task.FromResult(Answer.Plaintext);
            n = GC.GetAllocatedBytesForCurrentThread() - before;
            GC.KeepAlive(t);
        }
        return n;
    }

    // --- SIGHUP ---------------------------------------------------------------

    /// <summary>Re-reads the config file. Only "mode" is applied live (unless
    /// --mode was given: flags override the file, across reloads too); the
    /// other keys are read at start. A bad file is refused, naming the key, and
    /// the running configuration stays.</summary>
    public void Reload()
    {
        lock (_reloadGate)
        {
            if (_configPath == null)
            {
                Console.Error.WriteLine("hotpath-kestrel: reload: no config file (started without --config)");
                return;
            }
            Config? cfg = Config.Load(_configPath, out string error);
            if (cfg == null)
            {
                Console.Error.WriteLine($"hotpath-kestrel: reload refused: {error}; the running configuration stays");
                return;
            }
            Mode next = _modeFlag ?? cfg.Mode;
            if (next != _mode)
            {
                Stats.Switch(next);
                _mode = next;
            }
            Interlocked.Increment(ref _reloads);
            Console.Error.WriteLine($"hotpath-kestrel: reloaded {_configPath} (mode {_mode.Name()})");
        }
    }
}
