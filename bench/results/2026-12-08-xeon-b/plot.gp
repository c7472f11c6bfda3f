set terminal pngcairo size 1500,1500 font 'sans,10'
set output 'bench/results/2026-12-08-xeon-b/plot.png'
set datafile missing '-'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:60.8905]
set ylabel 'effective GB/s (minimum traffic / median time)'
set xtics rotate by 30 right font 'sans,9'
set xrange [-0.7:13.7]
set bmargin 7
set key top left horizontal
set multiplot layout 3,1 title 'clbn (PoCL CPU) vs PyTorch and oneDNN (2 threads): effective bandwidth; line = copy bandwidth 24.9 GB/s'
set title 'training forward'
plot 'bench/results/2026-12-08-xeon-b/plot_train.dat' using 2:xtic(1) title 'clbn' lc rgb '#d62728', '' using 3 title 'PyTorch' lc rgb '#1f77b4', '' using 4 title 'oneDNN' lc rgb '#2ca02c', '' using 5 title 'oneDNN nChw8c' lc rgb '#98df8a', 24.88 with lines lw 2 lc rgb 'black' title 'copy bandwidth'
set title 'inference forward'
plot 'bench/results/2026-12-08-xeon-b/plot_infer.dat' using 2:xtic(1) title 'clbn' lc rgb '#d62728', '' using 3 title 'PyTorch' lc rgb '#1f77b4', '' using 4 title 'oneDNN' lc rgb '#2ca02c', '' using 5 title 'oneDNN nChw8c' lc rgb '#98df8a', 24.88 with lines lw 2 lc rgb 'black' title 'copy bandwidth'
set title 'backward'
plot 'bench/results/2026-12-08-xeon-b/plot_backward.dat' using 2:xtic(1) title 'clbn' lc rgb '#d62728', '' using 3 title 'PyTorch' lc rgb '#1f77b4', '' using 4 title 'oneDNN' lc rgb '#2ca02c', '' using 5 title 'oneDNN nChw8c' lc rgb '#98df8a', 24.88 with lines lw 2 lc rgb 'black' title 'copy bandwidth'
unset multiplot
