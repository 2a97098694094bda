# plot.gp - the sweep's two plots, both modes on each, PNG and SVG.
#
#   gnuplot -e "data='sweep-plaintext.dat'; out='sweep-plaintext'; route='/plaintext'" plot.gp
#
# data: columns  offered  vt_achieved  vt_p99_us  task_achieved  task_p99_us
# (NaN where a mode was not run at that rate). Writes OUT-throughput.{png,svg}
# (achieved vs offered, with the ideal y = x) and OUT-p99.{png,svg} (p99
# latency vs offered, log scale). Made by loadtest/bench.py.

if (!exists("data")) data = 'sweep.dat'
if (!exists("out")) out = 'sweep'
if (!exists("route")) route = ''

set datafile missing "NaN"
set key top left box opaque
set grid
set xlabel "offered rate (req/s)"
set format x "%.0s%c"
set format y "%.0s%c"
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 1.0
set style line 2 lc rgb "#d62728" lw 2 pt 5 ps 1.0
set style line 3 lc rgb "#888888" lw 1 dt 2

do for [fmt in "png svg"] {
    if (fmt eq "png") { set terminal pngcairo size 900,560 font ",11" } else { set terminal svg size 900,560 dynamic font ",11" }

    set output out . "-throughput." . fmt
    set title "hotpath " . route . ": achieved vs offered (open loop, hotpath-load)"
    set ylabel "achieved rate (req/s)"
    unset logscale y
    set format y "%.0s%c"
    plot data using 1:1 with lines ls 3 title "offered (ideal)", \
         data using 1:2 with linespoints ls 1 title "valuetask", \
         data using 1:4 with linespoints ls 2 title "task"

    set output out . "-p99." . fmt
    set title "hotpath " . route . ": p99 latency vs offered rate (from intended send time)"
    set ylabel "p99 latency (µs, log scale)"
    set logscale y
    set format y "%g"
    plot data using 1:3 with linespoints ls 1 title "valuetask", \
         data using 1:5 with linespoints ls 2 title "task"
    unset output
}
