// TaskChain - task mode: every layer is an async method returning
// Task<Answer>, what the chain costs had every signature said Task<T>.
//
// An async Task<T> method that finishes without waiting still has to hand
// its caller a Task<T>, completed, and the runtime shares completed tasks
// only for a few results (AsyncTaskMethodBuilder<T> and Task.FromResult keep
// one for null / default, true and false, and the ints -1..8); an Answer is a
// non-null reference, so each layer allocates one Task<Answer> per request,
// always: 4 on /plaintext, 5 on a cache hit (the cache's get is the fifth),
// the same count as hotpath's task mode. /stats reports the size of one
// (runtime.task_bytes); tests/it_twin.c checks the difference per request.
using Microsoft.AspNetCore.Http;

namespace HotpathKestrel;

public sealed class TaskChain(Twin twin)
{
    public Task<Answer> Invoke(HttpContext c, Route r) => ServerHeaders(c, r);

    private async Task<Answer> ServerHeaders(HttpContext c, Route r)
    {
        Answer a = await RequestId(c, r);
        Layers.ServerHeaders(c);
        return a;
    }

    private async Task<Answer> RequestId(HttpContext c, Route r)
    {
        string id = Layers.RequestId(c);
        Answer a = await Metrics(c, r);
        Layers.SetRequestId(c, id);
        return a;
    }

    private async Task<Answer> Metrics(HttpContext c, Route r)
    {
        Answer a = await Handler(c, r);
        twin.Stats.Record(Mode.Task, r, a.Status);
        return a;
    }

    private Task<Answer> Handler(HttpContext c, Route r) => r switch
    {
        Route.Cache => Cache(c),
        // A task by design, in every mode (Upstream.cs).
        Route.Upstream => twin.Upstream.GetAsync(Routes.UpstreamPath(c.Request)),
        // Allocates: see the note at the top.
        _ => Task.FromResult(twin.SyncAnswer(c, r)),
    };

    private async Task<Answer> Cache(HttpContext c)
    {
        ReadOnlySpan<char> key = Routes.CacheKey(c.Request);
        if (key.IsEmpty) return Answer.BadKey;
        Task<Answer> get = twin.Cache.GetTask(key, out CacheOutcome how);
        Layers.SetCacheOutcome(c, how);
        return await get;
    }
}
