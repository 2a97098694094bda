# plot.gp - the capped sweep's plots for one runtime, PNG and SVG:
#   OUT-p99.{png,svg}         p99 latency vs offered rate per core (log y), one
#                             line per mode and cap, saturation points ringed,
#                             each cap's p99 bound dashed grey
#   OUT-throughput.{png,svg}  achieved vs offered, per core, with y = x
#
# Made by loadtest/harness/report.py, which passes (gnuplot -e):
#   data     the .dat file: n series blocks (gnuplot "index" 0..n-1), then nb
#            bound blocks; columns: offered/core achieved/core p99_us
#            p99_us_at_saturation (NaN elsewhere) offered; a point where the
#            generator was the limit is left out (it is not the server's)
#   n, nb    how many series and bound blocks
#   titles, colors, dts, btitles   one word per block
#   out, runtime, path

set datafile missing "NaN"
set key top left box opaque
set grid
set xlabel "offered rate per core (offered ÷ cap, req/s)"
set format x "%.0s%c"

do for [fmt in "png svg"] {
    if (fmt eq "png") { set terminal pngcairo noenhanced size 900,560 font ",11" } else { set terminal svg noenhanced size 900,560 dynamic font ",11" }

    set output out . "-p99." . fmt
    set title runtime . " " . path . ": p99 vs offered rate under a CPU cap (open loop, from intended send time)"
    set ylabel "p99 latency (µs, log scale)"
    set logscale y
    set format y "%g"
    plot for [i=1:n] data index (i-1) using 1:3 with linespoints lw 2 pt 7 ps 0.8 \
             lc rgb word(colors, i) dt int(word(dts, i)) title word(titles, i), \
         for [i=1:n] data index (i-1) using 1:4 with points pt 6 ps 3 lw 2 \
             lc rgb word(colors, i) notitle, \
         for [j=1:nb] data index (n+j-1) using 1:3 with lines lw 1 lc rgb "#888888" \
             dt int(j + 1) title word(btitles, j)

    set output out . "-throughput." . fmt
    set title runtime . " " . path . ": achieved vs offered rate per core, under a CPU cap"
    set ylabel "achieved rate per core (req/s)"
    unset logscale y
    set format y "%.0s%c"
    plot for [i=1:n] data index (i-1) using 1:1 with lines lw 1 lc rgb "#888888" dt 3 notitle, \
         for [i=1:n] data index (i-1) using 1:2 with linespoints lw 2 pt 7 ps 0.8 \
             lc rgb word(colors, i) dt int(word(dts, i)) title word(titles, i)
    unset output
}
