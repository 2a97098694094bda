// AspNetChain - aspnet mode: the same chain as ordinary ASP.NET Core code
// writes it. Middleware classes with Task InvokeAsync(HttpContext) and
// await next(context), added with the framework's UseMiddleware<T>, and a
// terminal RequestDelegate that writes the answer itself. Nothing returns a
// result: the answer goes into HttpContext.Response.
//
// An async method returning the non-generic Task that finishes without
// waiting hands back one cached, completed task (AsyncTaskMethodBuilder
// shares it), so this chain allocates no task on the synchronous path: the
// choice the twin's other modes measure is a choice only for methods that
// return a value. Headers are set before next (ASP.NET starts the response
// at the handler's first write, after which headers are read-only); the
// metrics step runs after, reading the status from the response.
using Microsoft.AspNetCore.Http;

namespace HotpathKestrel;

public sealed class ServerHeadersMiddleware(RequestDelegate next)
{
    public async Task InvokeAsync(HttpContext context)
    {
        Layers.ServerHeaders(context);
        await next(context);
    }
}

public sealed class RequestIdMiddleware(RequestDelegate next)
{
    public async Task InvokeAsync(HttpContext context)
    {
        Layers.SetRequestId(context, Layers.RequestId(context));
        await next(context);
    }
}

public sealed class MetricsMiddleware(RequestDelegate next, Stats stats)
{
    public async Task InvokeAsync(HttpContext context)
    {
        await next(context);
        stats.Record(Mode.AspNet, Routes.Match(context.Request), context.Response.StatusCode);
    }
}

/// <summary>The terminal delegate: the handler of the route.</summary>
public sealed class AspNetHandler(Twin twin)
{
    public Task InvokeAsync(HttpContext c)
    {
        Route r = Routes.Match(c.Request);
        switch (r)
        {
            case Route.Cache:
                ReadOnlySpan<char> key = Routes.CacheKey(c.Request);
                if (key.IsEmpty) break;
                ValueTask<Answer> get = twin.Cache.Get(key, out CacheOutcome how);
                Layers.SetCacheOutcome(c, how);
                if (!get.IsCompletedSuccessfully) return WriteAwaited(c, get);
                get.Result.Write(c);
                return Task.CompletedTask;
            case Route.Upstream:
                return WriteAwaited(c, twin.Upstream.GetAsync(Routes.UpstreamPath(c.Request)));
        }
        (r == Route.Cache ? Answer.BadKey : twin.SyncAnswer(c, r)).Write(c);
        return Task.CompletedTask;
    }

    private static async Task WriteAwaited(HttpContext c, ValueTask<Answer> pending) => (await pending).Write(c);

    private static async Task WriteAwaited(HttpContext c, Task<Answer> pending) => (await pending).Write(c);
}
