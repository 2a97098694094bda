// Config - the twin's reading of hotpath's configuration file.
//
// The same JSON file as config/hotpath.json, read with System.Text.Json's
// JsonDocument. The twin uses the keys below and ignores every other one
// (workers, limits, middleware, advice: hotpath's, not the twin's), but a
// key it uses must be well-formed: a bad value is refused with a message
// naming the key, in hotpath's words ("mode: expected ..."), and a malformed
// file is refused whole. Defaults are hotpath's, from its --help.
using System.Net;
using System.Text.Json;

namespace HotpathKestrel;

/// <summary>How the chain's layers return their result (see README.md).</summary>
public enum Mode
{
    /// <summary>Every layer an <c>async ValueTask&lt;Answer&gt;</c> with the pooling builder.</summary>
    ValueTask,
    /// <summary>Every layer an <c>async Task&lt;Answer&gt;</c>: one task per layer per request.</summary>
    Task,
    /// <summary>As ValueTask, with the default builder (a new box per asynchronous completion).</summary>
    ValueTaskNoPool,
    /// <summary>Idiomatic middleware: <c>Task InvokeAsync(HttpContext)</c>, no result.</summary>
    AspNet,
}

public static class Modes
{
    public static readonly Mode[] All = [Mode.ValueTask, Mode.Task, Mode.ValueTaskNoPool, Mode.AspNet];

    public static string Name(this Mode m) => m switch
    {
        Mode.ValueTask => "valuetask",
        Mode.Task => "task",
        Mode.ValueTaskNoPool => "valuetask-nopool",
        _ => "aspnet",
    };

    public const string Expected = "expected \"valuetask\", \"task\", \"valuetask-nopool\" or \"aspnet\"";

    public static bool TryParse(string? s, out Mode mode)
    {
        foreach (Mode m in All)
        {
            if (s == m.Name())
            {
                mode = m;
                return true;
            }
        }
        mode = Mode.ValueTask;
        return false;
    }
}

public sealed record Config
{
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8080;
    public Mode Mode { get; init; } = Mode.ValueTask;
    public string UpstreamHost { get; init; } = "127.0.0.1";
    public int UpstreamPort { get; init; } = 8081;
    public int UpstreamPoolSize { get; init; } = 64;
    public int UpstreamConnectTimeoutMs { get; init; } = 1000;
    public int UpstreamResponseTimeoutMs { get; init; } = 5000;
    public long UpstreamMaxResponseBytes { get; init; } = 8 << 20;
    public long CacheMaxBytes { get; init; } = 64 << 20;
    public long CacheTtlMs { get; init; } = 30000;

    /// <summary>Reads and checks a file. Returns null with error set when it is refused.</summary>
    public static Config? Load(string path, out string error)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = $"{path}: cannot read: {e.Message}";
            return null;
        }
        Config? c = Parse(text, out error);
        if (c == null) error = $"{path}: {error}";
        return c;
    }

    /// <summary>Parses the JSON text. Returns null with error set when it is refused.</summary>
    public static Config? Parse(string json, out string error)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            error = $"line {(e.LineNumber ?? 0) + 1}: not valid JSON";
            return null;
        }
        using (doc)
        {
            try
            {
                error = "";
                return FromRoot(doc.RootElement);
            }
            catch (ConfigException e)
            {
                error = e.Message;
                return null;
            }
        }
    }

    private sealed class ConfigException(string message) : Exception(message);

    private static Config FromRoot(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new ConfigException("expected a JSON object");
        var c = new Config();
        if (Section(root, "listen") is JsonElement listen)
        {
            c = c with
            {
                Host = Address(listen, "listen.host", c.Host),
                Port = (int)Integer(listen, "port", "listen.port", c.Port, 0, 65535),
            };
        }
        if (root.TryGetProperty("mode", out JsonElement mode))
        {
            if (!Modes.TryParse(mode.ValueKind == JsonValueKind.String ? mode.GetString() : null, out Mode m))
                throw new ConfigException($"mode: {Modes.Expected}");
            c = c with { Mode = m };
        }
        if (Section(root, "upstream") is JsonElement up)
        {
            c = c with
            {
                UpstreamHost = Address(up, "upstream.host", c.UpstreamHost),
                UpstreamPort = (int)Integer(up, "port", "upstream.port", c.UpstreamPort, 1, 65535),
                UpstreamPoolSize = (int)Integer(up, "pool_size", "upstream.pool_size", c.UpstreamPoolSize, 1, 100000),
                UpstreamConnectTimeoutMs = (int)Integer(up, "connect_timeout_ms", "upstream.connect_timeout_ms",
                                                        c.UpstreamConnectTimeoutMs, 1, 3600000),
                UpstreamResponseTimeoutMs = (int)Integer(up, "response_timeout_ms", "upstream.response_timeout_ms",
                                                         c.UpstreamResponseTimeoutMs, 1, 3600000),
                UpstreamMaxResponseBytes = Integer(up, "max_response_bytes", "upstream.max_response_bytes",
                                                   c.UpstreamMaxResponseBytes, 1, int.MaxValue),
            };
        }
        if (Section(root, "cache") is JsonElement cache)
        {
            c = c with
            {
                CacheMaxBytes = Integer(cache, "max_bytes", "cache.max_bytes", c.CacheMaxBytes, 0, long.MaxValue),
                CacheTtlMs = Integer(cache, "ttl_ms", "cache.ttl_ms", c.CacheTtlMs, 0, 86400000L * 365),
            };
        }
        return c;
    }

    private static JsonElement? Section(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out JsonElement s)) return null;
        if (s.ValueKind != JsonValueKind.Object) throw new ConfigException($"{name}: expected an object");
        return s;
    }

    private static long Integer(JsonElement section, string name, string key, long def, long lo, long hi)
    {
        if (!section.TryGetProperty(name, out JsonElement v)) return def;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long n) || n < lo || n > hi)
            throw new ConfigException($"{key}: expected an integer from {lo} to {hi}");
        return n;
    }

    private static string Address(JsonElement section, string key, string def)
    {
        string name = key[(key.IndexOf('.') + 1)..];
        if (!section.TryGetProperty(name, out JsonElement v)) return def;
        string? s = v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        if (s == null || !IPAddress.TryParse(s, out _))
            throw new ConfigException($"{key}: expected a numeric IP address");
        return s;
    }
}
