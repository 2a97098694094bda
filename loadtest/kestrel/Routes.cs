// Routes - hotpath's route table, as the twin serves it.
//
// Matched by hand, the same way in every mode, so that the modes differ only
// in how the chain returns its result. Endpoint routing (MapGet) would add
// its own per-request work (a RouteValueDictionary for /cache/{key}) to all
// modes alike; it is left out because the question is the chain's shape,
// not the router's. Route names are hotpath's /stats keys.
using Microsoft.AspNetCore.Http;

namespace HotpathKestrel;

public enum Route
{
    Plaintext,
    Json,
    Cache,
    Upstream,
    Stats,
    NotFound,
    MethodNotAllowed,
}

public static class Routes
{
    public static readonly Route[] All = Enum.GetValues<Route>();

    public const string CachePrefix = "/cache/";
    public const string UpstreamPrefix = "/upstream/";
    /// <summary>Keys are path segments; 256 bytes, as hotpath's KEY_MAX.</summary>
    public const int KeyMax = 256;

    public static string Name(this Route r) => r switch
    {
        Route.Plaintext => "/plaintext",
        Route.Json => "/json",
        Route.Cache => "/cache/",
        Route.Upstream => "/upstream/",
        Route.Stats => "/stats",
        Route.NotFound => "(not found)",
        _ => "(method not allowed)",
    };

    /// <summary>The route of a request: GET and HEAD everywhere, anything else a 405.</summary>
    public static Route Match(HttpRequest req)
    {
        string path = req.Path.Value ?? "";
        Route r = path switch
        {
            "/plaintext" => Route.Plaintext,
            "/json" => Route.Json,
            "/stats" => Route.Stats,
            _ when path.StartsWith(CachePrefix, StringComparison.Ordinal) => Route.Cache,
            _ when path.StartsWith(UpstreamPrefix, StringComparison.Ordinal) => Route.Upstream,
            _ => Route.NotFound,
        };
        if (r != Route.NotFound && !HttpMethods.IsGet(req.Method) && !HttpMethods.IsHead(req.Method))
            return Route.MethodNotAllowed;
        return r;
    }

    /// <summary>The key of /cache/{key}, or an empty span when it is not one path segment
    /// of 1..256 bytes, or is "." or ".." (hotpath's rule; Kestrel has already decoded
    /// the path and removed its dot-segments, which hotpath's handlers/target.c does
    /// itself).</summary>
    public static ReadOnlySpan<char> CacheKey(HttpRequest req)
    {
        ReadOnlySpan<char> key = (req.Path.Value ?? "").AsSpan(CachePrefix.Length);
        if (key.Length == 0 || key.Length > KeyMax || key.Contains('/') || key is "." or "..")
            return default;
        return key;
    }

    /// <summary>The upstream path of /upstream/{path}: "/{path}?{query}". Allocates:
    /// it only ever precedes an upstream request, which allocates anyway.</summary>
    public static string UpstreamPath(HttpRequest req)
    {
        string path = req.Path.Value ?? "";
        return string.Concat(path.AsSpan(UpstreamPrefix.Length - 1), req.QueryString.Value);
    }
}
