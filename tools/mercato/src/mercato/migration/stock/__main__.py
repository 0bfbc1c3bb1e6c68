from mercato.migration.stock.process import main

main()
