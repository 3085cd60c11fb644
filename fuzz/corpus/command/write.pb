
NASDAQAAPLreplace_range"ts*ts*venue2first:
2024-01-01B
€€ØÏÉ‚å×J1DPÀ„=Z6{"source":"feed","tick":0.01,"tags":["a",1,null,true]}badd_columnsj
ts
close >= 0rohlcz
Closeclose‚junk’batch-2024-01-02#7