
fx2024-01-01T00:00:00Z"2024-01-02 00:00:00.5@
bEURUSDbUSDJPYj
1minpreviousr