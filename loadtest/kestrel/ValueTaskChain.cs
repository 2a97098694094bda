// ValueTaskChain - valuetask mode: every layer is an async method returning
// ValueTask<Answer>; ValueTaskNoPoolChain below is the same chain with the
// default builder, so that both can be measured side by side.
//
// An async ValueTask<T> method that finishes without waiting returns its
// result inline in the struct: no allocation, however many layers. When a
// layer has to wait (a cache miss, an upstream request), its state machine
// moves to the heap: the default builder allocates a new box for it each
// time; PoolingAsyncValueTaskMethodBuilder (.NET 6+) rents the box from a
// per-thread and per-core pool and returns it when the result is taken -
// the counterpart of hotpath's pooled valuetask source in the request
// context. The pooled box may be awaited once only, which every layer here
// does: the only multi-waiter object on the path is the cache fill's Task.
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http;

namespace HotpathKestrel;

public sealed class ValueTaskChain(Twin twin)
{
    public ValueTask<Answer> Invoke(HttpContext c, Route r) => ServerHeaders(c, r);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Answer> ServerHeaders(HttpContext c, Route r)
    {
        Answer a = await RequestId(c, r);
        Layers.ServerHeaders(c);
        return a;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Answer> RequestId(HttpContext c, Route r)
    {
        string id = Layers.RequestId(c);
        Answer a = await Metrics(c, r);
        Layers.SetRequestId(c, id);
        return a;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Answer> Metrics(HttpContext c, Route r)
    {
        Answer a = await Handler(c, r);
        twin.Stats.Record(Mode.ValueTask, r, a.Status);
        return a;
    }

    private ValueTask<Answer> Handler(HttpContext c, Route r) => r switch
    {
        Route.Cache => Cache(c),
        Route.Upstream => new ValueTask<Answer>(twin.Upstream.GetAsync(Routes.UpstreamPath(c.Request))),
        _ => new ValueTask<Answer>(twin.SyncAnswer(c, r)),
    };

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Answer> Cache(HttpContext c)
    {
        ReadOnlySpan<char> key = Routes.CacheKey(c.Request);
        if (key.IsEmpty) return Answer.BadKey;
        ValueTask<Answer> get = twin.Cache.Get(key, out CacheOutcome how);
        Layers.SetCacheOutcome(c, how);
        return await get;
    }
}

/// <summary>valuetask-nopool mode: ValueTaskChain with the default builder
/// (AsyncValueTaskMethodBuilder). Identical when every layer completes
/// synchronously; a box per waiting layer when they wait.</summary>
public sealed class ValueTaskNoPoolChain(Twin twin)
{
    public ValueTask<Answer> Invoke(HttpContext c, Route r) => ServerHeaders(c, r);

    private async ValueTask<Answer> ServerHeaders(HttpContext c, Route r)
    {
        Answer a = await RequestId(c, r);
        Layers.ServerHeaders(c);
        return a;
    }

    private async ValueTask<Answer> RequestId(HttpContext c, Route r)
    {
        string id = Layers.RequestId(c);
        Answer a = await Metrics(c, r);
        Layers.SetRequestId(c, id);
        return a;
    }

    private async ValueTask<Answer> Metrics(HttpContext c, Route r)
    {
        Answer a = await Handler(c, r);
        twin.Stats.Record(Mode.ValueTaskNoPool, r, a.Status);
        return a;
    }

    private ValueTask<Answer> Handler(HttpContext c, Route r) => r switch
    {
        Route.Cache => Cache(c),
        Route.Upstream => new ValueTask<Answer>(twin.Upstream.GetAsync(Routes.UpstreamPath(c.Request))),
        _ => new ValueTask<Answer>(twin.SyncAnswer(c, r)),
    };

    private async ValueTask<Answer> Cache(HttpContext c)
    {
        ReadOnlySpan<char> key = Routes.CacheKey(c.Request);
        if (key.IsEmpty) return Answer.BadKey;
        ValueTask<Answer> get = twin.Cache.Get(key, out CacheOutcome how);
        Layers.SetCacheOutcome(c, how);
        return await get;
    }
}
