// Stats - what /stats reports: requests per route and mode, and the
// garbage collector's bill per mode.
//
// Requests are counted by the metrics layer (an Interlocked increment into
// a flat array: no allocation, no lock). The GC's figures cannot be counted
// per request (a collection serves every thread's allocations at once), so
// they are charged per mode by time: the process's cumulative figures -
// GC.GetTotalAllocatedBytes(precise: true), GC.CollectionCount(0..2),
// GC.GetTotalPauseDuration() - are sampled when the mode changes, and the
// interval between two samples belongs to the mode that ran in it. A reader
// diffs two /stats reads; requests in flight across a switch land on either
// side, which a load test's run of 10^5 requests does not notice.
//
// The observer stays out of the observation: what rendering /stats
// allocates is measured around it and subtracted from the allocated bytes,
// and /stats requests are not among a mode's requests (only in the /stats
// route's row). Everything else in the process (Kestrel's connection
// handling, its timers, the thread pool) is charged to the mode running.
using System.Diagnostics;
using System.Runtime;
using System.Text.Json;

namespace HotpathKestrel;

public sealed class Stats
{
    private static readonly string[] StatusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    private static readonly int NModes = Modes.All.Length, NRoutes = Routes.All.Length;

    /// <summary>Cumulative GC figures of the process at one instant.</summary>
    private readonly record struct Sample(long Bytes, long Gen0, long Gen1, long Gen2, TimeSpan Pause, long Ticks)
    {
        public static Sample operator -(Sample a, Sample b) =>
            new(a.Bytes - b.Bytes, a.Gen0 - b.Gen0, a.Gen1 - b.Gen1, a.Gen2 - b.Gen2, a.Pause - b.Pause, a.Ticks - b.Ticks);

        public static Sample operator +(Sample a, Sample b) =>
            new(a.Bytes + b.Bytes, a.Gen0 + b.Gen0, a.Gen1 + b.Gen1, a.Gen2 + b.Gen2, a.Pause + b.Pause, a.Ticks + b.Ticks);
    }

    private readonly long[] _requests = new long[NModes * NRoutes];
    private readonly long[] _status = new long[NModes * NRoutes * 5];
    private readonly Lock _gate = new(); // guards the samples below
    private readonly Sample[] _closed = new Sample[NModes];
    private readonly Sample _start;
    private Sample _since;
    private Mode _current;
    private long _excluded; // bytes allocated by /stats itself

    public Stats(Mode initial)
    {
        _current = initial;
        _start = _since = Now();
    }

    private Sample Now() =>
        new(GC.GetTotalAllocatedBytes(precise: true) - Volatile.Read(ref _excluded), GC.CollectionCount(0),
            GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration(), Stopwatch.GetTimestamp());

    /// <summary>The metrics layer's after-step: one request of mode m on route r answered status.</summary>
    public void Record(Mode m, Route r, int status)
    {
        int i = (int)m * NRoutes + (int)r;
        Interlocked.Increment(ref _requests[i]);
        int cls = status / 100 - 1;
        if ((uint)cls < 5) Interlocked.Increment(ref _status[i * 5 + cls]);
    }

    /// <summary>Closes the running mode's interval and opens next's.</summary>
    public void Switch(Mode next)
    {
        lock (_gate)
        {
            Sample now = Now();
            _closed[(int)_current] += now - _since;
            _since = now;
            _current = next;
        }
    }

    /// <summary>Writes "modes", "totals" and "routes". The caller brackets the whole
    /// rendering with BeginExclusion/EndExclusion.</summary>
    public void Write(Utf8JsonWriter w)
    {
        Sample[] perMode = new Sample[NModes];
        Sample now;
        lock (_gate)
        {
            now = Now();
            Array.Copy(_closed, perMode, NModes);
            perMode[(int)_current] += now - _since;
        }
        w.WriteStartObject("modes");
        foreach (Mode m in Modes.All)
        {
            Sample s = perMode[(int)m];
            long requests = 0;
            foreach (Route r in Routes.All)
                if (r != Route.Stats) requests += Interlocked.Read(ref _requests[(int)m * NRoutes + (int)r]);
            w.WriteStartObject(m.Name());
            w.WriteNumber("requests", requests);
            w.WriteNumber("allocated_bytes", s.Bytes);
            w.WriteNumber("bytes_per_request", requests > 0 ? Math.Round((double)s.Bytes / requests, 1) : 0);
            WriteGc(w, s);
            w.WriteEndObject();
        }
        w.WriteEndObject();

        w.WriteStartObject("totals");
        Sample t = now - _start;
        w.WriteNumber("allocated_bytes", t.Bytes);
        WriteGc(w, t);
        w.WriteNumber("excluded_stats_bytes", Volatile.Read(ref _excluded));
        w.WriteEndObject();

        w.WriteStartObject("routes");
        foreach (Route r in Routes.All)
        {
            bool any = false;
            foreach (Mode m in Modes.All)
            {
                int i = (int)m * NRoutes + (int)r;
                long n = Interlocked.Read(ref _requests[i]);
                if (n == 0) continue;
                if (!any) w.WriteStartObject(r.Name());
                any = true;
                w.WriteStartObject(m.Name());
                w.WriteNumber("requests", n);
                w.WriteStartObject("status");
                for (int k = 0; k < 5; k++)
                {
                    long sc = Interlocked.Read(ref _status[i * 5 + k]);
                    if (sc > 0) w.WriteNumber(StatusClasses[k], sc);
                }
                w.WriteEndObject();
                w.WriteEndObject();
            }
            if (any) w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    private static void WriteGc(Utf8JsonWriter w, Sample s)
    {
        // CollectionCount(0) counts every collection (a gen1 or gen2
        // collection collects gen0 too); gen1 includes gen2's likewise.
        w.WriteNumber("gen0", s.Gen0);
        w.WriteNumber("gen1", s.Gen1);
        w.WriteNumber("gen2", s.Gen2);
        w.WriteNumber("gc_pause_ms", Math.Round(s.Pause.TotalMilliseconds, 3));
        w.WriteNumber("wall_ms", Math.Round(Stopwatch.GetElapsedTime(0, s.Ticks).TotalMilliseconds, 3));
    }

    /// <summary>Bytes allocated so far; what /stats allocates between this and
    /// EndExclusion is taken out of every figure.</summary>
    public static long BeginExclusion() => GC.GetTotalAllocatedBytes(precise: true);

    public void EndExclusion(long begin) =>
        Interlocked.Add(ref _excluded, GC.GetTotalAllocatedBytes(precise: true) - begin);

    /// <summary>The GC in use, as the runtime reports it (not as configured: on one
    /// CPU the runtime may run workstation GC whatever the project file says).</summary>
    public static void WriteRuntime(Utf8JsonWriter w, long taskBytes)
    {
        IReadOnlyDictionary<string, object> gc = GC.GetConfigurationVariables();
        w.WriteStartObject("runtime");
        w.WriteString("dotnet", Environment.Version.ToString());
        w.WriteString("framework", System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription);
        w.WriteNumber("processors", Environment.ProcessorCount);
        w.WriteStartObject("gc");
        w.WriteBoolean("server", GCSettings.IsServerGC);
        w.WriteBoolean("concurrent", gc.TryGetValue("ConcurrentGC", out object? cc) && cc is true);
        w.WriteNumber("heap_count", gc.TryGetValue("HeapCount", out object? hc) ? Convert.ToInt64(hc) : 1);
        w.WriteString("latency_mode", GCSettings.LatencyMode.ToString());
        w.WriteEndObject();
        // The size of one Task<Answer>, measured at start-up: what task mode
        // adds per layer per request.
        w.WriteNumber("task_bytes", taskBytes);
        w.WriteEndObject();
    }
}
