
NASDAQ
AAPL/daily
2024-01-01"
€€ØÏÉ‚å×*ts*close2!close > 10 AND volume IS NOT NULL8dHP