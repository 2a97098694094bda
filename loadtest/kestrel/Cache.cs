// Cache - the L1 in-memory cache behind GET /cache/{key}, single-flight.
//
// The contract of hotpath's cache/cache.c, on the CLR:
//   hit        Get completes synchronously: a ValueTask<Answer> holding the
//              cached answer inline, nothing allocated (GetTask, task mode's
//              get, wraps it in a new Task<Answer>: a non-null reference is
//              never one of the runtime's cached tasks);
//   miss       one fill (an upstream request) starts; Get returns its task;
//   coalesced  a concurrent miss of the same key gets the same task: any
//              number of waiters, one upstream request. That sharing is what
//              a Task is for and a ValueTask must not do.
// Only 200 answers are stored; others pass through to every waiter.
//
// Lookups take the key as a span of the request path (the dictionary's
// alternate lookup, .NET 9+), so a hit allocates no key string. Entries live
// for cache.ttl_ms; past cache.max_bytes a value is served but not stored
// (counted). hotpath's SIEVE eviction and stale-while-revalidate are not
// modelled: the load tests never fill the cache or outlive the TTL.
//
// Why not HybridCache (Microsoft.Extensions.Caching.Hybrid), .NET's own
// L1/L2 cache with this contract (GetOrCreateAsync returns a ValueTask and
// coalesces concurrent factories)? It does not say whether a call was a hit,
// a miss or a coalesced wait, which X-Cache and the report need, and it takes
// the key as a string, so a hit from a request path allocates the key;
// micro/ measures both caches' hits side by side (see README.md).
using System.Collections.Concurrent;

namespace HotpathKestrel;

public enum CacheOutcome
{
    Hit,
    Miss,
    Coalesced,
}

public sealed class Cache
{
    private sealed record Entry(Answer Answer, long ExpiresAtMs, long Bytes);

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Entry>.AlternateLookup<ReadOnlySpan<char>> _bySpan;
    private readonly Dictionary<string, Task<Answer>> _pending = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Task<Answer>>.AlternateLookup<ReadOnlySpan<char>> _pendingBySpan;
    private readonly Lock _gate = new(); // guards _pending and the stores
    private readonly Upstream _upstream;
    private readonly long _ttlMs, _maxBytes;
    private long _bytes, _hits, _misses, _coalesced, _fills, _fillFailures, _rejected;

    public Cache(Upstream upstream, long ttlMs, long maxBytes)
    {
        _upstream = upstream;
        _ttlMs = ttlMs;
        _maxBytes = maxBytes;
        _bySpan = _entries.GetAlternateLookup<ReadOnlySpan<char>>();
        _pendingBySpan = _pending.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    public static string Name(CacheOutcome o) => o switch
    {
        CacheOutcome.Hit => "hit",
        CacheOutcome.Miss => "miss",
        _ => "coalesced",
    };

    /// <summary>The valuetask get: a hit completes synchronously and allocates nothing.</summary>
    public ValueTask<Answer> Get(ReadOnlySpan<char> key, out CacheOutcome how)
    {
        if (TryHit(key, out Answer? a))
        {
            how = CacheOutcome.Hit;
            return new ValueTask<Answer>(a);
        }
        return new ValueTask<Answer>(Miss(key, out how));
    }

    /// <summary>The task get: what Get costs had its signature said Task&lt;Answer&gt;.</summary>
    public Task<Answer> GetTask(ReadOnlySpan<char> key, out CacheOutcome how)
    {
        if (TryHit(key, out Answer? a))
        {
            how = CacheOutcome.Hit;
            return Task.FromResult(a); // allocates: results are cached only for null, bools and ints -1..8
        }
        return Miss(key, out how);
    }

    private bool TryHit(ReadOnlySpan<char> key, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Answer? a)
    {
        if (_bySpan.TryGetValue(key, out Entry? e) && Environment.TickCount64 < e.ExpiresAtMs)
        {
            Interlocked.Increment(ref _hits);
            a = e.Answer;
            return true;
        }
        a = null;
        return false;
    }

    private Task<Answer> Miss(ReadOnlySpan<char> key, out CacheOutcome how)
    {
        TaskCompletionSource<Answer> fill;
        string k;
        lock (_gate)
        {
            if (_pendingBySpan.TryGetValue(key, out Task<Answer>? shared))
            {
                Interlocked.Increment(ref _coalesced);
                how = CacheOutcome.Coalesced;
                return shared;
            }
            // A fill that completed between TryHit and the lock has stored its value.
            if (TryHit(key, out Answer? a))
            {
                how = CacheOutcome.Hit;
                return Task.FromResult(a);
            }
            k = key.ToString();
            fill = new TaskCompletionSource<Answer>();
            _pending.Add(k, fill.Task);
        }
        Interlocked.Increment(ref _misses);
        how = CacheOutcome.Miss;
        // Started outside the lock: the fill's completion takes the lock, and
        // its waiters' continuations run inline from SetResult, outside it too.
        _ = FillAsync(k, fill);
        return fill.Task;
    }

    private async Task FillAsync(string key, TaskCompletionSource<Answer> fill)
    {
        Interlocked.Increment(ref _fills);
        Answer a = await _upstream.GetAsync("/items/" + key).ConfigureAwait(false);
        lock (_gate)
        {
            _pending.Remove(key);
            if (a.Status == 200) Store(key, a);
            else Interlocked.Increment(ref _fillFailures);
        }
        fill.SetResult(a);
    }

    private void Store(string key, Answer a)
    {
        long bytes = key.Length * 2L + a.Body.Length + 64;
        if (_bytes + bytes > _maxBytes)
        {
            _rejected++;
            return;
        }
        if (_entries.TryRemove(key, out Entry? old)) _bytes -= old.Bytes;
        _entries[key] = new Entry(a, Environment.TickCount64 + _ttlMs, bytes);
        _bytes += bytes;
    }

    /// <summary>Stores an answer without a fill (micro/ primes a hit with it).</summary>
    public void Prime(string key, Answer a)
    {
        lock (_gate) Store(key, a);
    }

    public (string Name, long Value)[] Counters()
    {
        lock (_gate)
        {
            return
            [
                ("hits", Interlocked.Read(ref _hits)),
                ("misses", Interlocked.Read(ref _misses)),
                ("coalesced", Interlocked.Read(ref _coalesced)),
                ("fills", Interlocked.Read(ref _fills)),
                ("fill_failures", Interlocked.Read(ref _fillFailures)),
                ("rejected_too_big", _rejected),
                ("entries", _entries.Count),
                ("bytes", _bytes),
                ("max_bytes", _maxBytes),
            ];
        }
    }
}
